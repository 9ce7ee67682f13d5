//! `ztos-image`: builds, inspects and checks ZTOS images, and fetches Debian's kernel.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ztos_image::build::{build, find_kernel, BuildConfig, SYSTEMD_BOOT_EFI};
use ztos_image::kernel_config::{check, KernelConfig, KernelConfigError, ZTOS_FRAGMENT};

#[derive(Parser)]
#[command(
    name = "ztos-image",
    version,
    about = "Build, inspect and check ZTOS disk images"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build ztos.img and ztos.qcow2 (reproducible: set SOURCE_DATE_EPOCH).
    Build {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// An unpacked kernel package (`just kernel` makes .cache/kernel/linux-image).
        #[arg(long)]
        kernel_dir: PathBuf,
        /// Where the release binaries are.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// Files copied verbatim into the root.
        #[arg(long, default_value = "rootfs")]
        rootfs: PathBuf,
        /// The image version (os-release, boot entry title).
        #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
        version: String,
        /// File holding the admin password's argon2id PHC string.
        #[arg(long)]
        admin_password_hash: Option<PathBuf>,
        /// Kernel config fragment the kernel must satisfy (default: the shipped one).
        #[arg(long)]
        fragment: Option<PathBuf>,
        #[arg(long, default_value = SYSTEMD_BOOT_EFI)]
        systemd_boot: PathBuf,
        /// Timestamp of every file and identifier seed; defaults to 0 when unset.
        #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
        source_date_epoch: u64,
        /// Skip writing ztos.qcow2.
        #[arg(long)]
        no_qcow2: bool,
    },
    /// Show an image's partitions, boot entries and slots.
    Inspect { image: PathBuf },
    /// Name every option of the fragment that a kernel config lacks (exit 1 if any).
    CheckKernel {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        fragment: Option<PathBuf>,
    },
    /// Download Debian's linux-image-amd64 kernel into a cache directory and unpack it.
    FetchKernel {
        #[arg(long, default_value = ".cache/kernel")]
        cache: PathBuf,
    },
}

fn fragment_text(path: &Option<PathBuf>) -> anyhow::Result<String> {
    match path {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())),
        None => Ok(ZTOS_FRAGMENT.to_string()),
    }
}

fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// apt-get download linux-image-<abi>-amd64 (the versioned package the metapackage depends
/// on), dpkg-deb -x it into `<cache>/linux-image`, and depmod (the package leaves modules.dep
/// to its postinst).
fn fetch_kernel(cache: &Path) -> anyhow::Result<PathBuf> {
    let depends = run(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    let package = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .context(
            "apt-cache depends linux-image-amd64 names no linux-image-*-amd64 (run apt-get update)",
        )?
        .to_string();
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    run(Command::new("apt-get")
        .args(["download", &package])
        .current_dir(cache))?;
    let deb = std::fs::read_dir(cache)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .max()
        .with_context(|| {
            format!(
                "apt-get download left no {package}_*.deb in {}",
                cache.display()
            )
        })?;
    let tree = cache.join("linux-image");
    if tree.exists() {
        std::fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    let release = package
        .strip_prefix("linux-image-")
        .expect("checked prefix")
        .to_string();
    run(Command::new("depmod").arg("-b").arg(&tree).arg(&release))?;
    Ok(tree)
}

fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Cmd::CheckKernel { config, fragment } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            match check(&KernelConfig::parse(&text), &fragment_text(&fragment)?) {
                Ok(()) => {
                    println!("{}: every required option is set", config.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(KernelConfigError::Missing { missing }) => {
                    for option in &missing {
                        eprintln!("missing: {option}");
                    }
                    eprintln!(
                        "{}: {} required option(s) missing",
                        config.display(),
                        missing.len()
                    );
                    Ok(ExitCode::FAILURE)
                }
                Err(other) => Err(other.into()),
            }
        }
        Cmd::FetchKernel { cache } => {
            let tree = fetch_kernel(&cache)?;
            let kernel = find_kernel(&tree)?;
            let text = std::fs::read_to_string(&kernel.config)?;
            check(&KernelConfig::parse(&text), ZTOS_FRAGMENT)?;
            println!("kernel {} unpacked in {}", kernel.release, tree.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Inspect { image } => {
            let report = ztos_image::inspect::inspect(&image)
                .with_context(|| format!("inspecting {}", image.display()))?;
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Build {
            out,
            kernel_dir,
            bin_dir,
            rootfs,
            version,
            admin_password_hash,
            fragment,
            systemd_boot,
            source_date_epoch,
            no_qcow2,
        } => {
            let started = Instant::now();
            let config = BuildConfig {
                out_dir: out,
                kernel_dir,
                bin_dir,
                rootfs_dir: rootfs,
                systemd_boot_efi: systemd_boot,
                version,
                source_date_epoch,
                fragment: fragment_text(&fragment)?,
                admin_password_hash,
                qcow2: !no_qcow2,
            };
            let report = build(&config).context("building the image")?;
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            println!("kernel {}", report.kernel_release);
            println!(
                "initramfs {:.1} MiB ({} modules)",
                mib(report.initramfs_bytes),
                report.initramfs_modules
            );
            println!(
                "root squashfs {:.1} MiB ({} modules), {:.1} MiB without modules",
                mib(report.root_squashfs_bytes),
                report.root_modules,
                mib(report.root_squashfs_without_modules_bytes)
            );
            println!("wrote {}", report.image.display());
            if let Some(q) = &report.qcow2 {
                let size = std::fs::metadata(q)?.len();
                println!("wrote {} ({:.1} MiB)", q.display(), mib(size));
            }
            println!("built in {:.1} s", started.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
    }
}
