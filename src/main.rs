//! The `ig` binary: everything lives in the library; see `ig::cli`.

fn main() -> std::process::ExitCode {
    ig::cli::main()
}
