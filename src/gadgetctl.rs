//! The `gadgetctl` binary: the client of `ig daemon`
//! (`ig_cli::cli::gadgetctl`).

fn main() -> std::process::ExitCode {
    ig_cli::cli::gadgetctl::main()
}
