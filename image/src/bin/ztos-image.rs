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
        /// A public key (NAME.pub) updates must be signed by, installed in /etc/ztos/trust
        /// (repeatable). Releases use offline keys; `keygen` makes a development pair.
        #[arg(long = "trust-key")]
        trust_keys: Vec<PathBuf>,
        /// A directory copied over the root tree (replacing files) before the squashfs is made.
        #[arg(long)]
        overlay: Option<PathBuf>,
    },
    /// Make an update signing key pair: NAME.key (private, mode 0600) and NAME.pub.
    Keygen {
        /// NAME: the path without extension.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a signed update bundle from a kernel, an initramfs and a root image.
    Bundle {
        /// The output directory of `ztos-image build` (vmlinuz, initramfs.img, root.squashfs,
        /// release.toml) instead of --kernel/--initramfs/--root/--version.
        #[arg(long, conflicts_with_all = ["kernel", "initramfs", "root", "version"])]
        from_build: Option<PathBuf>,
        #[arg(long, required_unless_present = "from_build")]
        kernel: Option<PathBuf>,
        #[arg(long, required_unless_present = "from_build")]
        initramfs: Option<PathBuf>,
        /// The root squashfs.
        #[arg(long, required_unless_present = "from_build")]
        root: Option<PathBuf>,
        #[arg(long, required_unless_present = "from_build")]
        version: Option<String>,
        /// The oldest version that may install this bundle.
        #[arg(long, default_value = "0.0.0")]
        min_version: String,
        /// The manifest's build time (seconds since the epoch); default SOURCE_DATE_EPOCH of
        /// the build, or now.
        #[arg(long)]
        build_time: Option<u64>,
        /// A private key (NAME.key) to sign with (repeatable, at least one).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Add a signature to a bundle (the header is rewritten, the artifacts copied).
    Sign {
        bundle: PathBuf,
        /// A private key (NAME.key) to sign with (repeatable).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
    },
    /// Check a bundle against a trust directory: signatures, manifest, every artifact's digest.
    Verify {
        bundle: PathBuf,
        /// The trusted keys (*.pub) and trust statements (*.trust), like /etc/ztos/trust.
        #[arg(long)]
        trust: PathBuf,
        /// A trust statement shipped next to the bundle (repeatable).
        #[arg(long = "statement")]
        statements: Vec<PathBuf>,
    },
    /// Write a trust statement: the signer's key says "trust this key" (key rotation).
    TrustKey {
        /// The already trusted private key (NAME.key) that signs the statement.
        #[arg(long)]
        signer: PathBuf,
        /// The new public key (NAME.pub) to trust.
        #[arg(long)]
        key: PathBuf,
        /// The statement file to write (put it in /etc/ztos/trust as NAME.trust).
        #[arg(short, long)]
        out: PathBuf,
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

fn public_path(name: &Path) -> PathBuf {
    name.with_extension("pub")
}

/// The release subcommands: keys, bundles, signatures, trust statements.
mod release {
    use std::fs::File;
    use std::io::{BufReader, BufWriter, Write};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};

    use anyhow::{bail, Context};
    use ztos_image::build::{ReleaseInfo, OUT_INITRAMFS, OUT_KERNEL, OUT_ROOT, RELEASE_INFO};
    use ztos_image::bundle::{
        write_bundle, Artifact, BundleHeader, BundleReader, Manifest, FORMAT_VERSION,
    };
    use ztos_image::trust::{KeyId, PublicKey, SecretKey, TrustStatement, TrustStore};
    use ztos_image::version::Version;

    fn read_text(path: &Path) -> anyhow::Result<String> {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }

    fn secret_key(path: &Path) -> anyhow::Result<SecretKey> {
        SecretKey::parse_text(&read_text(path)?)
            .with_context(|| format!("{} is not a private key", path.display()))
    }

    fn public_key(path: &Path) -> anyhow::Result<PublicKey> {
        PublicKey::parse_text(&read_text(path)?)
            .with_context(|| format!("{} is not a public key", path.display()))
    }

    /// Writes `path` through a temporary file in the same directory, fsynced and renamed, so
    /// a failure leaves either the old file or the new one.
    fn write_atomically(
        path: &Path,
        fill: impl FnOnce(&mut BufWriter<&File>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let name = path
            .file_name()
            .with_context(|| format!("{} has no file name", path.display()))?;
        let temp = path.with_file_name(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let result = (|| {
            let file =
                File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
            let mut writer = BufWriter::new(&file);
            fill(&mut writer)?;
            writer
                .flush()
                .with_context(|| format!("writing {}", temp.display()))?;
            drop(writer);
            file.sync_all()
                .with_context(|| format!("syncing {}", temp.display()))?;
            std::fs::rename(&temp, path)
                .with_context(|| format!("renaming {} to {}", temp.display(), path.display()))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    pub fn keygen(name: &Path) -> anyhow::Result<(PathBuf, KeyId)> {
        let secret_path = name.with_extension("key");
        let public_path = super::public_path(name);
        let secret = SecretKey::generate();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret_path)
            .with_context(|| {
                format!("creating {} (it must not exist yet)", secret_path.display())
            })?;
        file.write_all(secret.to_text().as_bytes())
            .and_then(|_| file.sync_all())
            .with_context(|| format!("writing {}", secret_path.display()))?;
        let public = secret.public();
        std::fs::write(&public_path, public.to_text())
            .with_context(|| format!("writing {}", public_path.display()))?;
        Ok((secret_path, public.id()))
    }

    /// Where a bundle's artifacts come from.
    pub struct BundleInputs {
        pub kernel: PathBuf,
        pub initramfs: PathBuf,
        pub root: PathBuf,
        pub version: String,
        /// SOURCE_DATE_EPOCH of the build, when known.
        pub build_time: Option<u64>,
    }

    impl BundleInputs {
        pub fn from_build(dir: &Path) -> anyhow::Result<BundleInputs> {
            let info_path = dir.join(RELEASE_INFO);
            let info: ReleaseInfo = toml::from_str(&read_text(&info_path)?).with_context(|| {
                format!("{} is not a build's release info", info_path.display())
            })?;
            let inputs = BundleInputs {
                kernel: dir.join(OUT_KERNEL),
                initramfs: dir.join(OUT_INITRAMFS),
                root: dir.join(OUT_ROOT),
                version: info.version,
                build_time: Some(info.source_date_epoch),
            };
            for path in [&inputs.kernel, &inputs.initramfs, &inputs.root] {
                if !path.is_file() {
                    bail!(
                        "{} is missing (was {} made by this version of ztos-image build?)",
                        path.display(),
                        dir.display()
                    );
                }
            }
            Ok(inputs)
        }
    }

    fn open(path: &Path) -> anyhow::Result<BufReader<File>> {
        Ok(BufReader::new(
            File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    }

    pub fn bundle(
        inputs: &BundleInputs,
        min_version: &str,
        build_time: Option<u64>,
        keys: &[PathBuf],
        out: &Path,
    ) -> anyhow::Result<Manifest> {
        let keys: Vec<SecretKey> = keys
            .iter()
            .map(|k| secret_key(k))
            .collect::<Result<_, _>>()?;
        let hash = |path: &Path| {
            Artifact::of_reader(open(path)?).with_context(|| format!("reading {}", path.display()))
        };
        let build_time = match build_time.or(inputs.build_time) {
            Some(time) => time,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_secs(),
        };
        let manifest = Manifest {
            format: FORMAT_VERSION,
            version: Version::parse(&inputs.version)?,
            build_time,
            min_version: Version::parse(min_version).context("--min-version")?,
            kernel: hash(&inputs.kernel)?,
            initramfs: hash(&inputs.initramfs)?,
            root: hash(&inputs.root)?,
        };
        // The limits the reader enforces, checked before anything is written.
        Manifest::parse(manifest.to_toml().as_bytes())?;
        let key_refs: Vec<&SecretKey> = keys.iter().collect();
        let header = BundleHeader::signed(manifest.to_toml().into_bytes(), &key_refs)?;
        write_atomically(out, |writer| {
            write_bundle(
                writer,
                &header,
                &manifest,
                [
                    &mut open(&inputs.kernel)?,
                    &mut open(&inputs.initramfs)?,
                    &mut open(&inputs.root)?,
                ],
            )?;
            Ok(())
        })?;
        Ok(manifest)
    }

    pub fn sign(bundle: &Path, keys: &[PathBuf]) -> anyhow::Result<Vec<KeyId>> {
        let keys: Vec<SecretKey> = keys
            .iter()
            .map(|k| secret_key(k))
            .collect::<Result<_, _>>()?;
        let mut reader = open(bundle)?;
        let mut header = BundleHeader::read_from(&mut reader)
            .with_context(|| format!("reading {}", bundle.display()))?;
        Manifest::parse(&header.manifest)
            .with_context(|| format!("refusing to sign {}", bundle.display()))?;
        for key in &keys {
            header.add_signature(key)?;
        }
        write_atomically(bundle, |writer| {
            writer.write_all(&header.encode()?)?;
            std::io::copy(&mut reader, writer)
                .with_context(|| format!("copying the artifacts of {}", bundle.display()))?;
            Ok(())
        })?;
        Ok(keys.iter().map(|k| k.public().id()).collect())
    }

    pub fn verify(bundle: &Path, trust: &Path, statements: &[PathBuf]) -> anyhow::Result<String> {
        let mut store = TrustStore::load_dir(trust)?;
        let mut extra = Vec::new();
        for path in statements {
            let name = path.display().to_string();
            extra.push((
                name.clone(),
                TrustStatement::parse_text(&read_text(path)?, &name)?,
            ));
        }
        store.add_statements(extra)?;
        let reader = BundleReader::open(open(bundle)?, &store)
            .with_context(|| format!("{} is rejected", bundle.display()))?;
        let manifest = reader.manifest().clone();
        let signatures = reader.signatures().to_vec();
        reader
            .finish()
            .with_context(|| format!("{} is rejected", bundle.display()))?;
        let mut report = format!("{}: verified\n", bundle.display());
        report.push_str(&format!(
            "version {}, updates from {} or later, built at {}\n",
            manifest.version, manifest.min_version, manifest.build_time
        ));
        for (name, artifact) in [
            ("kernel", &manifest.kernel),
            ("initramfs", &manifest.initramfs),
            ("root image", &manifest.root),
        ] {
            report.push_str(&format!(
                "{name}: {} bytes, sha256 {}\n",
                artifact.size,
                hex::encode(artifact.sha256)
            ));
        }
        for signature in signatures {
            report.push_str(&format!(
                "signed by {} ({})\n",
                signature.key,
                if signature.trusted {
                    "trusted, verified"
                } else {
                    "untrusted, ignored"
                }
            ));
        }
        Ok(report)
    }

    pub fn trust_key(signer: &Path, key: &Path, out: &Path) -> anyhow::Result<TrustStatement> {
        let statement = TrustStatement::sign(&secret_key(signer)?, &public_key(key)?);
        write_atomically(out, |writer| {
            writer.write_all(statement.to_text().as_bytes())?;
            Ok(())
        })?;
        Ok(statement)
    }
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
        Cmd::Keygen { out } => {
            let (secret, public) = release::keygen(&out)?;
            println!(
                "wrote {} (private: keep it offline) and {}, key id {public}",
                secret.display(),
                public_path(&out).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bundle {
            from_build,
            kernel,
            initramfs,
            root,
            version,
            min_version,
            build_time,
            keys,
            out,
        } => {
            let inputs = match from_build {
                Some(dir) => release::BundleInputs::from_build(&dir)?,
                None => release::BundleInputs {
                    kernel: kernel.context("--kernel is required")?,
                    initramfs: initramfs.context("--initramfs is required")?,
                    root: root.context("--root is required")?,
                    version: version.context("--version is required")?,
                    build_time: None,
                },
            };
            let manifest = release::bundle(&inputs, &min_version, build_time, &keys, &out)?;
            println!(
                "wrote {} (version {}, {} bytes of artifacts, {} signature(s))",
                out.display(),
                manifest.version,
                manifest.artifacts_size(),
                keys.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sign { bundle, keys } => {
            for id in release::sign(&bundle, &keys)? {
                println!("signed {} with key {id}", bundle.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Verify {
            bundle,
            trust,
            statements,
        } => {
            print!("{}", release::verify(&bundle, &trust, &statements)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::TrustKey { signer, key, out } => {
            let statement = release::trust_key(&signer, &key, &out)?;
            println!(
                "wrote {}: key {} says trust key {}",
                out.display(),
                statement.signed_by.id(),
                statement.trust.id()
            );
            Ok(ExitCode::SUCCESS)
        }
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
            trust_keys,
            overlay,
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
                trust_keys,
                overlay_dir: overlay,
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
