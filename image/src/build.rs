//! Builds a ZTOS disk image from a kernel package tree, the release binaries and rootfs/:
//!
//! 1. find the kernel (vmlinuz, config, modules) and check its config against the fragment;
//! 2. assemble the initramfs (ztos-init as /init, its libraries, the modules to reach root);
//! 3. assemble the root tree and make it a squashfs with mksquashfs (reproducible flags);
//! 4. make the perm ext4 with mkfs.ext4 under a fixed clock, UUID and hash seed;
//! 5. write GPT, ESP (systemd-boot, loader entries, slot A's kernel + initramfs), root A and
//!    perm into `ztos.img`; convert it to `ztos.qcow2`.
//!
//! Every identifier and timestamp derives from the version and SOURCE_DATE_EPOCH, so the same
//! inputs give a bit-identical image.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bootloader::{boot_entry, loader_conf, EntryName, ENTRIES_DIR};
use crate::disk_io::{copy_sparse, PartitionIo};
use crate::esp::{write_esp, EspError};
use crate::gpt::{Gpt, GptError, GptPartition};
use crate::guid::{Guid, GuidError};
use crate::host::{image_path_of_library, shared_libraries, stripped, HostToolError};
use crate::kernel_config::{check, KernelConfig, KernelConfigError};
use crate::layout::{
    extent_of, image_size, partition_extents, Slot, SlotLayout, ESP_LABEL, PERM_LABEL,
    ROOT_A_LABEL, SECTOR_SIZE,
};
use crate::modules::{
    plain_path, read_module, ModuleIndex, ModulesError, FEATURE_MODULES, INITRAMFS_MODULES,
};
use crate::tree::{FileTree, Node, TreeError};

/// Binaries every image needs, installed in /usr/bin.
pub const REQUIRED_BINARIES: &[&str] = &["ztos-init", "ztosd", "ztos"];
/// Plugin binaries, installed when the build directory has them (`ztos-test-plugin`, a test
/// double, is deliberately not here).
pub const PLUGIN_BINARIES: &[&str] = &[
    "ztos-bgp",
    "ztos-wireguard",
    "ztos-macsec",
    "ztos-gpu-offload",
];
/// e2fsprogs tools init runs on perm, installed in /usr/sbin (reached as /sbin).
pub const E2FSPROGS_TOOLS: &[&str] = &["e2fsck", "mke2fs", "resize2fs"];
/// Where Debian's systemd-boot-efi puts the boot manager.
pub const SYSTEMD_BOOT_EFI: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// Where ztosd looks for an admin password hash placed by the image build.
pub const ADMIN_PASSWORD_HASH_PATH: &str = "etc/ztos/admin-password.hash";
/// The file, in the initramfs and in the root, listing modules to load (init's contract).
pub const MODULES_LOAD_PATH: &str = "etc/ztos/modules.load";

/// What a build needs.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    pub out_dir: PathBuf,
    /// An unpacked kernel package: `boot/vmlinuz-<release>`, `boot/config-<release>` and
    /// `lib/modules/<release>/` with `modules.dep`.
    pub kernel_dir: PathBuf,
    /// Where the release binaries are (`target/release`).
    pub bin_dir: PathBuf,
    /// The repository's rootfs/ directory, copied verbatim (its README.md excepted).
    pub rootfs_dir: PathBuf,
    pub systemd_boot_efi: PathBuf,
    pub version: String,
    pub source_date_epoch: u64,
    /// The kernel config fragment the kernel must satisfy.
    pub fragment: String,
    /// An argon2id PHC string file for the admin user, placed at /etc/ztos/admin-password.hash.
    pub admin_password_hash: Option<PathBuf>,
    /// Also write `ztos.qcow2` (needs qemu-img).
    pub qcow2: bool,
    /// Public keys (`*.pub`) installed in /etc/ztos/trust: the keys updates must be signed by.
    pub trust_keys: Vec<PathBuf>,
    /// A directory copied over the finished root tree (replacing what is there) before the
    /// squashfs is made.
    pub overlay_dir: Option<PathBuf>,
}

/// What `build` leaves in the output directory for `ztos-image bundle --from-build`: the
/// kernel, the initramfs and the root squashfs of slot A, and [`RELEASE_INFO`].
pub const OUT_KERNEL: &str = "vmlinuz";
pub const OUT_INITRAMFS: &str = "initramfs.img";
pub const OUT_ROOT: &str = "root.squashfs";
/// `version = "..."` and `source_date_epoch = N` of the build (TOML).
pub const RELEASE_INFO: &str = "release.toml";

/// The contents of [`RELEASE_INFO`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseInfo {
    pub version: String,
    pub source_date_epoch: u64,
}

/// What a build produced, with the sizes `inspect` and the benchmarks report.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub kernel_release: String,
    pub image: PathBuf,
    pub qcow2: Option<PathBuf>,
    pub initramfs_bytes: u64,
    pub initramfs_modules: usize,
    pub root_squashfs_bytes: u64,
    /// The root squashfs built without /usr/lib/modules (the 30 MB budget).
    pub root_squashfs_without_modules_bytes: u64,
    pub root_modules: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("kernel directory {dir}: {reason}")]
    Kernel { dir: PathBuf, reason: String },
    #[error(transparent)]
    KernelConfig(#[from] KernelConfigError),
    #[error(transparent)]
    Modules(#[from] ModulesError),
    #[error("required binary {path} is missing (build the workspace in release mode first)")]
    MissingBinary { path: PathBuf },
    #[error(transparent)]
    HostTool(#[from] HostToolError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Gpt(#[from] GptError),
    #[error(transparent)]
    Esp(#[from] EspError),
    #[error(transparent)]
    Guid(#[from] GuidError),
    #[error("{what} is {size} bytes, larger than its {capacity}-byte partition")]
    TooLarge {
        what: String,
        size: u64,
        capacity: u64,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Version(#[from] crate::version::VersionError),
    #[error("trust key {path}: {reason}")]
    TrustKey { path: PathBuf, reason: String },
    #[error(
        "/{path} in the root holds a private signing key; private keys must never be in an image"
    )]
    PrivateKeyInImage { path: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(io_error(path))
}

/// The kernel files of an unpacked kernel package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFiles {
    pub release: String,
    pub vmlinuz: PathBuf,
    pub config: PathBuf,
    pub modules_dir: PathBuf,
}

/// Finds the one kernel release in `dir` (`boot/vmlinuz-<release>`).
pub fn find_kernel(dir: &Path) -> Result<KernelFiles, BuildError> {
    let fail = |reason: String| BuildError::Kernel {
        dir: dir.to_path_buf(),
        reason,
    };
    let boot = dir.join("boot");
    let entries = std::fs::read_dir(&boot).map_err(|e| fail(format!("reading boot/: {e}")))?;
    let mut releases: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_string)
        })
        .collect();
    releases.sort();
    let release = match releases.as_slice() {
        [one] => one.clone(),
        [] => return Err(fail("no boot/vmlinuz-<release>".into())),
        many => return Err(fail(format!("several kernels: {}", many.join(", ")))),
    };
    let modules_dir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| dir.join(m).join(&release))
        .find(|p| p.join("modules.dep").is_file())
        .ok_or_else(|| {
            fail(format!(
                "no lib/modules/{release}/modules.dep (run depmod -b {} {release})",
                dir.display()
            ))
        })?;
    Ok(KernelFiles {
        vmlinuz: boot.join(format!("vmlinuz-{release}")),
        config: boot.join(format!("config-{release}")),
        modules_dir,
        release,
    })
}

/// Adds `binary` (stripped) at `image_path` and the libraries and loader it needs.
fn add_binary(
    tree: &mut FileTree,
    binary: &Path,
    image_path: &str,
    scratch: &Path,
) -> Result<(), BuildError> {
    tree.file(image_path, 0o755, stripped(binary, scratch)?)?;
    for library in shared_libraries(binary)? {
        tree.file(&image_path_of_library(&library), 0o755, read(&library)?)?;
    }
    Ok(())
}

/// The merged-/usr symlinks both trees share.
fn add_usr_links(tree: &mut FileTree) -> Result<(), BuildError> {
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        tree.symlink(link, target)?;
    }
    tree.dir("usr/lib64")?;
    Ok(())
}

/// Adds the modules of `names` (plain .ko) and the modules.load listing them, skipping those in
/// `already_loaded`. Returns the number of modules added.
fn add_modules(
    tree: &mut FileTree,
    kernel: &KernelFiles,
    index: &ModuleIndex,
    names: &[&str],
    already_loaded: &[String],
) -> Result<usize, BuildError> {
    let modules: Vec<String> = index
        .resolve(names)?
        .into_iter()
        .filter(|m| !already_loaded.contains(m))
        .collect();
    let mut list = String::new();
    for module in &modules {
        let plain = plain_path(module);
        let data = read_module(&kernel.modules_dir, module)?;
        tree.file(
            &format!("usr/lib/modules/{}/{plain}", kernel.release),
            0o644,
            data,
        )?;
        list.push_str(&plain);
        list.push('\n');
    }
    tree.file(MODULES_LOAD_PATH, 0o644, list.into_bytes())?;
    Ok(modules.len())
}

/// The initramfs tree: /init (ztos-init), its libraries, the modules to reach root, and the
/// mount points init uses before switch_root.
pub fn initramfs_tree(
    config: &BuildConfig,
    kernel: &KernelFiles,
    index: &ModuleIndex,
    scratch: &Path,
) -> Result<(FileTree, usize), BuildError> {
    let mut tree = FileTree::new();
    add_usr_links(&mut tree)?;
    for dir in ["dev", "proc", "sys", "sysroot", "run"] {
        tree.dir(dir)?;
    }
    add_binary(&mut tree, &binary(config, "ztos-init")?, "init", scratch)?;
    let count = add_modules(&mut tree, kernel, index, INITRAMFS_MODULES, &[])?;
    Ok((tree, count))
}

fn binary(config: &BuildConfig, name: &str) -> Result<PathBuf, BuildError> {
    let path = config.bin_dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(BuildError::MissingBinary { path })
    }
}

/// Copies `dir` into `tree` at `prefix`, keeping permission bits and symlinks.
fn add_directory(tree: &mut FileTree, dir: &Path, prefix: &str) -> Result<(), BuildError> {
    copy_directory(tree, dir, prefix, false)
}

/// Copies `dir` into `tree` at `prefix`; with `overlay`, replacing files already there and
/// keeping a top-level README.md.
fn copy_directory(
    tree: &mut FileTree,
    dir: &Path,
    prefix: &str,
    overlay: bool,
) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_error(dir))?
        .collect::<Result<_, _>>()
        .map_err(io_error(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if prefix.is_empty() && name == "README.md" && !overlay {
            continue;
        }
        let image_path = format!("{prefix}{name}");
        let meta = std::fs::symlink_metadata(&path).map_err(io_error(&path))?;
        let node = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(io_error(&path))?;
            Node::Symlink {
                target: target.to_string_lossy().into_owned(),
            }
        } else if meta.is_dir() {
            Node::Dir {
                mode: meta.permissions().mode() & 0o7777,
            }
        } else {
            Node::File {
                mode: meta.permissions().mode() & 0o7777,
                data: read(&path)?,
            }
        };
        let is_dir = matches!(node, Node::Dir { .. });
        if overlay {
            tree.replace(&image_path, node)?;
        } else {
            tree.insert(&image_path, node)?;
        }
        if is_dir {
            copy_directory(tree, &path, &format!("{image_path}/"), overlay)?;
        }
    }
    Ok(())
}

/// The os-release of a ZTOS `version`.
pub fn os_release(version: &str) -> String {
    format!(
        "NAME=\"ZTOS\"\nID=ztos\nPRETTY_NAME=\"ZTOS {version}\"\nVERSION=\"{version}\"\nVERSION_ID={version}\nHOME_URL=\"https://github.com/ztos/ztos\"\n"
    )
}

fn find_tool(name: &str) -> Result<PathBuf, BuildError> {
    ["/usr/sbin", "/sbin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| BuildError::MissingBinary {
            path: PathBuf::from(format!("/usr/sbin/{name}")),
        })
}

/// The root filesystem tree.
pub fn root_tree(
    config: &BuildConfig,
    kernel: &KernelFiles,
    index: &ModuleIndex,
    scratch: &Path,
) -> Result<(FileTree, usize), BuildError> {
    let mut tree = FileTree::new();
    add_usr_links(&mut tree)?;
    for dir in ["dev", "proc", "sys", "run", "perm", "etc/ztos", "usr/sbin"] {
        tree.dir(dir)?;
    }
    tree.insert("tmp", Node::Dir { mode: 0o1777 })?;
    for name in REQUIRED_BINARIES {
        add_binary(
            &mut tree,
            &binary(config, name)?,
            &format!("usr/bin/{name}"),
            scratch,
        )?;
    }
    for name in PLUGIN_BINARIES {
        let path = config.bin_dir.join(name);
        if path.is_file() {
            add_binary(&mut tree, &path, &format!("usr/bin/{name}"), scratch)?;
        }
    }
    for tool in E2FSPROGS_TOOLS {
        add_binary(
            &mut tree,
            &find_tool(tool)?,
            &format!("usr/sbin/{tool}"),
            scratch,
        )?;
    }
    tree.symlink("usr/sbin/mkfs.ext4", "mke2fs")?;
    tree.symlink("usr/sbin/fsck.ext4", "e2fsck")?;
    let mke2fs_conf = Path::new("/etc/mke2fs.conf");
    if mke2fs_conf.is_file() {
        tree.file("etc/mke2fs.conf", 0o644, read(mke2fs_conf)?)?;
    }
    add_directory(&mut tree, &config.rootfs_dir, "")?;
    tree.file(
        "usr/lib/os-release",
        0o644,
        os_release(&config.version).into_bytes(),
    )?;
    tree.symlink("etc/os-release", "../usr/lib/os-release")?;
    tree.symlink("etc/resolv.conf", "/run/resolv.conf")?;
    tree.symlink("etc/hostname", "/run/hostname")?;
    if let Some(hash) = &config.admin_password_hash {
        tree.file(ADMIN_PASSWORD_HASH_PATH, 0o600, read(hash)?)?;
    }
    add_trust_keys(&mut tree, &config.trust_keys)?;
    let initramfs_modules = index.resolve(INITRAMFS_MODULES)?;
    let count = add_modules(
        &mut tree,
        kernel,
        index,
        FEATURE_MODULES,
        &initramfs_modules,
    )?;
    if let Some(overlay) = &config.overlay_dir {
        copy_directory(&mut tree, overlay, "", true)?;
    }
    refuse_private_keys(&tree)?;
    Ok((tree, count))
}

/// Installs each public key file in /etc/ztos/trust under its own name, checking it is one.
fn add_trust_keys(tree: &mut FileTree, keys: &[PathBuf]) -> Result<(), BuildError> {
    let trust_dir = crate::trust::TRUST_DIR.trim_start_matches('/');
    tree.dir(trust_dir)?;
    for path in keys {
        let fail = |reason: String| BuildError::TrustKey {
            path: path.clone(),
            reason,
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.ends_with(".pub"))
            .ok_or_else(|| fail("the file name must end in .pub".into()))?;
        let data = read(path)?;
        let text = String::from_utf8(data.clone()).map_err(|_| fail("not UTF-8 text".into()))?;
        crate::trust::PublicKey::parse_text(&text).map_err(|e| fail(e.to_string()))?;
        let image_path = format!("{trust_dir}/{name}");
        if tree.get(&image_path).is_some() {
            return Err(fail(format!("/{image_path} is already in the image")));
        }
        tree.file(&image_path, 0o644, data)?;
    }
    Ok(())
}

/// Fails if any file of the root tree holds a private signing key.
fn refuse_private_keys(tree: &FileTree) -> Result<(), BuildError> {
    for (path, node) in tree.iter() {
        if let Node::File { data, .. } = node {
            if crate::trust::contains_secret_key(data) {
                return Err(BuildError::PrivateKeyInImage {
                    path: path.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Makes a squashfs of `tree` (without the paths `skip` rejects) at `out`, returning its size.
fn make_squashfs(
    tree: &FileTree,
    skip: impl Fn(&str) -> bool,
    staging: &Path,
    out: &Path,
    epoch: u64,
) -> Result<u64, BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(staging).map_err(io_error(staging))?;
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o755))
        .map_err(io_error(staging))?;
    tree.materialize(staging, skip)?;
    let epoch = epoch.to_string();
    crate::host::run(
        Command::new("mksquashfs")
            // mksquashfs reads SOURCE_DATE_EPOCH itself and refuses it next to the flags.
            .env_remove("SOURCE_DATE_EPOCH")
            .arg(staging)
            .arg(out)
            .args(["-noappend", "-no-progress", "-quiet"])
            .args(["-comp", "zstd", "-Xcompression-level", "19", "-b", "256K"])
            .args(["-reproducible", "-all-root"])
            .args(["-mkfs-time", &epoch, "-all-time", &epoch]),
    )?;
    Ok(std::fs::metadata(out).map_err(io_error(out))?.len())
}

/// Makes the empty perm ext4 at `out` (`size` bytes), reproducibly.
fn make_perm(config: &BuildConfig, out: &Path, size: u64) -> Result<(), BuildError> {
    let file = File::create(out).map_err(io_error(out))?;
    file.set_len(size).map_err(io_error(out))?;
    drop(file);
    let uuid = derive(config, "perm-filesystem");
    let hash_seed = derive(config, "perm-hash-seed");
    crate::host::run(
        Command::new("mkfs.ext4")
            .env("E2FSPROGS_FAKE_TIME", config.source_date_epoch.to_string())
            .env("MKE2FS_DEVICE_SECTSIZE", "512")
            .args(["-q", "-F", "-T", "small", "-L", PERM_LABEL])
            .args(["-U", &uuid.to_string()])
            .args(["-E", &format!("hash_seed={hash_seed},root_owner=0:0")])
            .arg(out),
    )?;
    Ok(())
}

fn derive(config: &BuildConfig, what: &str) -> Guid {
    Guid::derive(&[&config.version, &config.source_date_epoch.to_string(), what])
}

/// The partition table of an image built with `config`.
pub fn partition_table(config: &BuildConfig) -> Gpt {
    Gpt {
        disk_guid: derive(config, "disk"),
        total_sectors: image_size() / SECTOR_SIZE,
        partitions: partition_extents()
            .iter()
            .map(|extent| GptPartition {
                type_guid: Guid::parse(extent.spec.type_guid).expect("layout GUIDs are valid"),
                unique_guid: derive(config, extent.spec.label),
                first_lba: extent.first_lba(),
                last_lba: extent.last_lba(),
                attributes: 0,
                name: extent.spec.label.to_string(),
            })
            .collect(),
    }
}

/// Leaves slot A's artifacts and [`RELEASE_INFO`] in the output directory (the input of
/// `ztos-image bundle --from-build`).
fn write_release_outputs(
    config: &BuildConfig,
    kernel: &KernelFiles,
    initramfs: &[u8],
    squashfs: &Path,
) -> Result<(), BuildError> {
    let out = &config.out_dir;
    std::fs::write(out.join(OUT_INITRAMFS), initramfs).map_err(io_error(out))?;
    std::fs::copy(&kernel.vmlinuz, out.join(OUT_KERNEL)).map_err(io_error(&kernel.vmlinuz))?;
    std::fs::rename(squashfs, out.join(OUT_ROOT)).map_err(io_error(squashfs))?;
    let info = toml::to_string(&ReleaseInfo {
        version: config.version.clone(),
        source_date_epoch: config.source_date_epoch,
    })
    .expect("release info serializes");
    std::fs::write(out.join(RELEASE_INFO), info).map_err(io_error(out))?;
    Ok(())
}

/// Builds `ztos.img` (and `ztos.qcow2`) in `config.out_dir`.
pub fn build(config: &BuildConfig) -> Result<BuildReport, BuildError> {
    crate::version::Version::parse(&config.version)?;
    let kernel = find_kernel(&config.kernel_dir)?;
    let kernel_config = KernelConfig::parse(&String::from_utf8_lossy(&read(&kernel.config)?));
    check(&kernel_config, &config.fragment)?;
    let index = ModuleIndex::load(&kernel.modules_dir)?;

    std::fs::create_dir_all(&config.out_dir).map_err(io_error(&config.out_dir))?;
    let work = config.out_dir.join(".work");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(io_error(&work))?;
    }
    std::fs::create_dir(&work).map_err(io_error(&work))?;

    // The initramfs: newc cpio, gzip (the Debian kernel has RD_GZIP and RD_ZSTD; gzip is the
    // one every kernel has).
    let (initramfs, initramfs_modules) = initramfs_tree(config, &kernel, &index, &work)?;
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(3)
        .write(Vec::new(), flate2::Compression::best());
    crate::cpio::write_newc(&initramfs, config.source_date_epoch as u32, &mut encoder)
        .and_then(|_| encoder.try_finish())
        .map_err(io_error(Path::new("initramfs")))?;
    let initramfs_bytes = encoder.finish().map_err(io_error(Path::new("initramfs")))?;

    // The root filesystem, and once more without modules to measure the budget.
    let (root, root_modules) = root_tree(config, &kernel, &index, &work)?;
    let squashfs = work.join("root.squashfs");
    let root_squashfs_bytes = make_squashfs(
        &root,
        |_| false,
        &work.join("root"),
        &squashfs,
        config.source_date_epoch,
    )?;
    let root_squashfs_without_modules_bytes = make_squashfs(
        &root,
        |p| p.starts_with("usr/lib/modules"),
        &work.join("root-without-modules"),
        &work.join("root-without-modules.squashfs"),
        config.source_date_epoch,
    )?;
    let root_a = extent_of(ROOT_A_LABEL).expect("layout has root a");
    if root_squashfs_bytes > root_a.size {
        return Err(BuildError::TooLarge {
            what: "the root squashfs".into(),
            size: root_squashfs_bytes,
            capacity: root_a.size,
        });
    }
    let perm_extent = extent_of(PERM_LABEL).expect("layout has perm");
    let perm = work.join("perm.ext4");
    make_perm(config, &perm, perm_extent.size)?;

    // The disk.
    let image_path = config.out_dir.join("ztos.img");
    let _ = std::fs::remove_file(&image_path);
    let image = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&image_path)
        .map_err(io_error(&image_path))?;
    image.set_len(image_size()).map_err(io_error(&image_path))?;
    partition_table(config).write_to(&mut &image)?;

    let slot = Slot::A;
    let mut esp_files = BTreeMap::new();
    let systemd_boot = read(&config.systemd_boot_efi)?;
    esp_files.insert("EFI/BOOT/BOOTX64.EFI".to_string(), systemd_boot.clone());
    esp_files.insert("EFI/systemd/systemd-bootx64.efi".to_string(), systemd_boot);
    // `default ztos-*` and slot A's entry at generation 1 without a counter: the factory
    // slot is good. Slot B gets an entry only when an update writes it (docs/update.md).
    esp_files.insert("loader/loader.conf".to_string(), loader_conf().into_bytes());
    esp_files.insert(
        format!("{ENTRIES_DIR}/{}", EntryName::good(1, slot).file_name()),
        boot_entry(slot, &config.version).into_bytes(),
    );
    esp_files.insert(
        format!("{}/vmlinuz", slot.esp_dir()),
        read(&kernel.vmlinuz)?,
    );
    esp_files.insert(
        format!("{}/initramfs", slot.esp_dir()),
        initramfs_bytes.clone(),
    );
    let esp = extent_of(ESP_LABEL).expect("layout has the esp");
    let volume_id = u32::from_le_bytes(
        derive(config, "esp-volume-id").as_bytes()[..4]
            .try_into()
            .expect("4 bytes"),
    );
    write_esp(
        PartitionIo::new(&image, esp.offset, esp.size),
        volume_id,
        config.source_date_epoch,
        &esp_files,
    )?;

    for (source, extent) in [(&squashfs, root_a), (&perm, perm_extent)] {
        let mut file = File::open(source).map_err(io_error(source))?;
        copy_sparse(&mut file, &image, extent.offset).map_err(io_error(&image_path))?;
    }
    (&image).flush().map_err(io_error(&image_path))?;
    image.sync_all().map_err(io_error(&image_path))?;
    drop(image);
    write_release_outputs(config, &kernel, &initramfs_bytes, &squashfs)?;

    let qcow2 = if config.qcow2 {
        let path = config.out_dir.join("ztos.qcow2");
        let _ = std::fs::remove_file(&path);
        crate::host::run(
            Command::new("qemu-img")
                .args(["convert", "-O", "qcow2"])
                .arg(&image_path)
                .arg(&path),
        )?;
        Some(path)
    } else {
        None
    };
    std::fs::remove_dir_all(&work).map_err(io_error(&work))?;

    Ok(BuildReport {
        kernel_release: kernel.release,
        image: image_path,
        qcow2,
        initramfs_bytes: initramfs_bytes.len() as u64,
        initramfs_modules,
        root_squashfs_bytes,
        root_squashfs_without_modules_bytes,
        root_modules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_carries_the_version() {
        let text = os_release("1.2.3");
        assert!(text.contains("VERSION_ID=1.2.3\n"), "{text}");
        assert!(text.contains("ID=ztos\n"), "{text}");
    }

    #[test]
    fn kernel_lookup_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_kernel(dir.path()).unwrap_err();
        assert!(err.to_string().contains("reading boot/"), "{err}");
        std::fs::create_dir(dir.path().join("boot")).unwrap();
        std::fs::write(dir.path().join("boot/vmlinuz-6.1.0-9-amd64"), b"k").unwrap();
        let err = find_kernel(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("lib/modules/6.1.0-9-amd64/modules.dep"),
            "{err}"
        );
        std::fs::create_dir_all(dir.path().join("lib/modules/6.1.0-9-amd64")).unwrap();
        std::fs::write(
            dir.path().join("lib/modules/6.1.0-9-amd64/modules.dep"),
            b"",
        )
        .unwrap();
        let kernel = find_kernel(dir.path()).unwrap();
        assert_eq!(kernel.release, "6.1.0-9-amd64");
        assert!(kernel.config.ends_with("boot/config-6.1.0-9-amd64"));
    }
}
