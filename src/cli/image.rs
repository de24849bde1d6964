//! `ig image ...`: build, list, remove, tag, export, import; pull and
//! push are in `registry`, inspect in `inspect`, sign and verify in
//! `trust`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;

use super::args::{ImageCommand, ListFormat, RegistryArgs};
use super::logger;
use super::table;
use ig::build::{self, BuildOptions};
use ig::files::Target;
use ig::image::{GadgetImage, Reference, Store, archive, created_timestamp};

pub fn image(store: &Path, registry: &RegistryArgs, cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Pull {
            image,
            all_platforms,
        } => super::registry::pull_command(store, &image, all_platforms, registry),
        ImageCommand::Push { image } => super::registry::push_command(store, &image, registry),
        ImageCommand::Sign { image, key, form } => {
            super::trust::sign_command(store, &image, &key, form)
        }
        ImageCommand::Verify { image, public_keys } => {
            super::trust::verify_command(store, &image, &public_keys)
        }
        ImageCommand::Inspect {
            image,
            output,
            show_datasources,
        } => super::inspect::inspect(store, &image, output, show_datasources),
        ImageCommand::Export { images, file } => {
            let store = Store::open_read_only(store)?;
            let images = images
                .iter()
                .map(|i| store.find(i))
                .collect::<Result<Vec<_>, _>>()?;
            let target = if file.as_os_str() == "-" {
                Target::Stdout
            } else {
                Target::Path(&file)
            };
            let done = archive::export(&store, &images, target)
                .with_context(|| format!("exporting to {target}"))?;
            for i in &images {
                // stdout carries the archive itself.
                if done.to_stdout {
                    log::info!("Exported {i}");
                } else {
                    logger::stdout_line(&format!("Exported {i}"));
                }
            }
            Ok(())
        }
        ImageCommand::Import { file } => {
            let store = Store::open(store)?;
            let imported = archive::import_file(&store, &file)
                .with_context(|| format!("importing {}", file.display()))?;
            if imported.untagged > 0 {
                log::warn!(
                    "{} image(s) of {} have no name and were not imported",
                    imported.untagged,
                    file.display()
                );
            }
            for (r, d) in &imported.images {
                logger::stdout_line(&format!("Imported {r}@{d}"));
            }
            Ok(())
        }
        ImageCommand::Build { dir, tag, file } => {
            let swept = build::sweep_build_dirs(&std::env::temp_dir(), build::Sweep::Stale);
            if swept > 0 {
                log::debug!("removed {swept} build director(ies) of ig processes that are gone");
            }
            remove_build_dirs_on_interrupt()?;
            let mut opts = BuildOptions::new(dir.clone());
            opts.build_file = file;
            let built = build::build(&opts)
                .with_context(|| format!("building gadget {}", dir.display()))?;
            let tag = tag.unwrap_or_else(|| built.metadata.name.clone());
            let reference = Reference::parse(&tag)?;
            // What `ig run` will check: operator names, custom parameters
            // and their templates, paramDefaults, something to run.
            let file = dir
                .join(built.metadata_file.as_deref().unwrap_or("gadget.yaml"))
                .display()
                .to_string();
            let wasm = built.wasm.clone().map(|w| {
                Box::new(ig::operators::wasm::WasmOperator::new(
                    tag.clone(),
                    w,
                    &built.metadata,
                    None,
                    logger::guest_stderr(),
                )) as Box<dyn ig::pipeline::Operator>
            });
            let seams = ig::operators::Seams {
                gadget_runs: super::run::gadget_runs(),
                ..ig::operators::Seams::default()
            };
            let assembly = ig::run::Assembly::for_build(
                built.metadata.clone(),
                file,
                built.object.clone(),
                wasm,
                seams,
            )
            .with_context(|| format!("building gadget {}", dir.display()))?;
            for w in &assembly.warnings {
                log::warn!("{w}");
            }
            let created = created_timestamp(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())?;
            let image = GadgetImage {
                config_yaml: built.metadata_yaml,
                ebpf_object: built.object.unwrap_or_default(),
                wasm: built.wasm,
                annotations: build::annotations(&built.metadata, created),
            };
            let store = Store::open(store)?;
            let desc = store.add_gadget_image(&reference, image).with_context(|| {
                format!("writing image {reference} into {}", store.root().display())
            })?;
            if let Some(c) = &built.contract
                && c.tracers.is_empty()
                && c.iters.is_empty()
                && c.map_iters.is_empty()
                && assembly.configured.is_empty()
            {
                log::warn!(
                    "the gadget declares no data source (GADGET_TRACER, GADGET_ITER, GADGET_MAPITER): `ig run` will have nothing to show"
                );
            }
            if built.contract.is_none() {
                log::debug!(
                    "no eBPF program: a gadget of operators ({})",
                    if assembly.configured.is_empty() {
                        "none turned on".to_owned()
                    } else {
                        assembly.configured.join(", ")
                    }
                );
            }
            logger::stdout_line(&format!("Successfully built {reference}@{}", desc.digest));
            Ok(())
        }
        ImageCommand::List { no_trunc, output } => {
            let store = Store::open_read_only(store)?;
            let images = store.list()?;
            if output != ListFormat::Columns {
                // Upstream's keys, full values: what scripts read.
                let all: Vec<serde_json::Value> = images
                    .iter()
                    .map(|i| {
                        let mut v = serde_json::json!({
                            "Repository": i.repository,
                            "Tag": i.tag.clone().unwrap_or_default(),
                            "Digest": i.digest.to_string(),
                            "Created": i.created.clone().unwrap_or_default(),
                        });
                        // Only for a damaged image: upstream's keys stay
                        // as they are for every sound one.
                        if let Some(p) = &i.problem {
                            v["Problem"] = p.clone().into();
                        }
                        v
                    })
                    .collect();
                logger::stdout_line(&if output == ListFormat::Json {
                    serde_json::to_string(&all)?
                } else {
                    serde_json::to_string_pretty(&all)?
                });
                damaged_hint(&images);
                return Ok(());
            }
            let any_damaged = images.iter().any(|i| i.problem.is_some());
            let rows: Vec<Vec<String>> = images
                .iter()
                .map(|i| {
                    let repo = if no_trunc {
                        i.repository.clone()
                    } else {
                        i.reference.short_repository()
                    };
                    let digest = if no_trunc {
                        i.digest.to_string()
                    } else {
                        i.digest.short().to_owned()
                    };
                    let mut row = vec![
                        repo,
                        i.tag.clone().unwrap_or_else(|| "<none>".into()),
                        digest,
                        i.created.clone().unwrap_or_default(),
                    ];
                    if any_damaged {
                        row.push(i.problem.clone().unwrap_or_default());
                    }
                    row
                })
                .collect();
            // The PROBLEM column only when an image has one: a sound
            // store lists as upstream's does.
            let mut header = vec!["REPOSITORY", "TAG", "DIGEST", "CREATED"];
            if any_damaged {
                header.push("PROBLEM");
            }
            logger::stdout_line(table::render_rows(&header, &rows).trim_end());
            damaged_hint(&images);
            Ok(())
        }
        ImageCommand::Prune => {
            let store = Store::open(store)?;
            let r = store.prune_leftovers()?;
            let builds = build::sweep_build_dirs(&std::env::temp_dir(), build::Sweep::Stale);
            logger::stdout_line(&format!(
                "Removed {} temp file(s) of interrupted writes, {} unreferenced blob(s) and {} build director(ies) of interrupted builds, {} bytes freed from the store",
                r.temp_files, r.blobs, builds, r.bytes
            ));
            Ok(())
        }
        ImageCommand::Remove { images } => {
            let store = Store::open(store)?;
            for i in images {
                let r = Reference::parse(&i)?;
                let removed = store.remove(&r).with_context(|| format!("removing {r}"))?;
                logger::stdout_line(&format!("Removed {r}"));
                // Its signatures (both forms) go with the last name of
                // the image.
                let digest = removed.digest;
                if !store.list()?.iter().any(|i| i.digest == digest) {
                    let sigs = store
                        .find_signatures(&r.repository(), &digest)?
                        .into_iter()
                        .chain(store.find_referrers(&r.repository(), &digest)?);
                    for sig in sigs.filter(|s| s.repository() == r.repository()) {
                        store
                            .remove(&sig)
                            .with_context(|| format!("removing the signature {sig}"))?;
                        log::debug!("removed the signature {sig}");
                    }
                }
            }
            Ok(())
        }
        ImageCommand::Tag { source, target } => {
            let store = Store::open(store)?;
            let (s, t) = (Reference::parse(&source)?, Reference::parse(&target)?);
            store
                .tag(&s, &t)
                .with_context(|| format!("tagging {s} as {t}"))?;
            logger::stdout_line(&format!("Tagged {s} as {t}"));
            Ok(())
        }
    }
}

/// Set once a signal ended the build (see [`remove_build_dirs_on_interrupt`]).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Set when the main thread waits for that signal's thread to exit.
static MAIN_WAITING: AtomicBool = AtomicBool::new(false);

/// Called as a command ends: after a signal during a build, the thread
/// that read it exits the process; the main thread must not get there
/// first with the error the removal caused (or a success).
pub(super) fn wait_if_interrupted() {
    if INTERRUPTED.load(Ordering::SeqCst) {
        MAIN_WAITING.store(true, Ordering::SeqCst);
        loop {
            std::thread::park();
        }
    }
}

/// SIGINT or SIGTERM during `ig image build`: remove this process's build
/// directories, then exit as the signal would have (128 + its number),
/// printing nothing, as a killed command does. The signals are blocked in
/// this thread (threads started later inherit the mask; programs ig runs,
/// such as clang, do not: std resets the mask in the child) and read by a
/// thread of their own. SIGKILL cannot be caught: the next build or
/// `ig image prune` removes what it leaves (`build::sweep_build_dirs`).
fn remove_build_dirs_on_interrupt() -> anyhow::Result<()> {
    // SAFETY: a sigset_t filled by sigemptyset/sigaddset, then blocked in
    // this thread only.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGINT);
        libc::sigaddset(&raw mut set, libc::SIGTERM);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) != 0 {
            anyhow::bail!(
                "blocking SIGINT and SIGTERM: {}",
                std::io::Error::last_os_error()
            );
        }
        set
    };
    std::thread::Builder::new()
        .name("ig-build-signals".into())
        .spawn(move || {
            let mut sig = 0;
            // SAFETY: waits for one of the blocked signals of `set`.
            if unsafe { libc::sigwait(&raw const set, &raw mut sig) } != 0 {
                return;
            }
            // From here the main thread, which fails on the directory
            // removed under it (or may recreate parts of it first), waits
            // at the end instead of reporting that; the directory is swept
            // again once it waits, or after 500 ms.
            INTERRUPTED.store(true, Ordering::SeqCst);
            let sweep = || {
                build::sweep_build_dirs(
                    &std::env::temp_dir(),
                    build::Sweep::OfPid(std::process::id()),
                )
            };
            sweep();
            let end = std::time::Instant::now() + std::time::Duration::from_millis(500);
            while !MAIN_WAITING.load(Ordering::SeqCst) && std::time::Instant::now() < end {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            sweep();
            std::process::exit(128 + sig);
        })
        .context("starting the thread that cleans up after SIGINT and SIGTERM")?;
    Ok(())
}

/// After `ig image list`: what to do about images it showed as damaged.
fn damaged_hint(images: &[ig::image::ImageSummary]) {
    let damaged: Vec<&ig::image::ImageSummary> =
        images.iter().filter(|i| i.problem.is_some()).collect();
    let Some(first) = damaged.first() else {
        return;
    };
    logger::hint(&format!(
        "{} image(s) cannot be used as stored (PROBLEM); `ig image inspect {}` says more; remove a damaged image with `ig image remove NAME` and pull, build or import it again",
        damaged.len(),
        first.reference
    ));
}
