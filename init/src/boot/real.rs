//! [`RealSyscalls`]: the [`Syscalls`] of a real PID 1, through nix and std, without `unsafe`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{umount2, MntFlags};
use nix::sys::reboot::RebootMode;
use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{chdir, chroot, Pid};
use rand::TryRngCore;

use super::syscalls::{EntryInfo, GrowOutcome, MsFlags, RebootKind, Syscalls, Watchdog};

/// `RAMFS_MAGIC` from `<linux/magic.h>` (nix names only tmpfs's).
const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The real syscalls.
#[derive(Debug, Default)]
pub struct RealSyscalls;

impl RealSyscalls {
    pub fn new() -> Self {
        RealSyscalls
    }
}

impl Syscalls for RealSyscalls {
    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        let fstype = (!fstype.is_empty()).then_some(fstype);
        nix::mount::mount(Some(source), target, fstype, flags, data).map_err(io::Error::from)
    }

    fn umount(&mut self, target: &Path, lazy: bool) -> io::Result<()> {
        let flags = if lazy {
            MntFlags::MNT_DETACH
        } else {
            MntFlags::empty()
        };
        umount2(target, flags).map_err(io::Error::from)
    }

    fn mkdir_p(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
        {
            // On a read-only root an existing mount point may answer EROFS.
            Err(_) if path.is_dir() => Ok(()),
            result => result,
        }
    }

    fn write_file(&mut self, path: &Path, contents: &[u8]) -> io::Result<()> {
        std::fs::write(path, contents)
    }

    fn read_file(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_dir(&mut self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = std::fs::read_dir(path)?
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<Vec<_>>>()?;
        names.sort();
        Ok(names)
    }

    fn exists(&mut self, path: &Path) -> bool {
        path.exists()
    }

    fn entry_info(&mut self, path: &Path) -> io::Result<EntryInfo> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::symlink_metadata(path)?;
        Ok(EntryInfo {
            is_dir: metadata.is_dir(),
            device: metadata.dev(),
        })
    }

    fn remove(&mut self, path: &Path, is_dir: bool) -> io::Result<()> {
        if is_dir {
            std::fs::remove_dir(path)
        } else {
            std::fs::remove_file(path)
        }
    }

    fn grow_partition(&mut self, disk: &Path, label: &str) -> io::Result<GrowOutcome> {
        use std::io::{Seek, SeekFrom};
        let mut file = OpenOptions::new().read(true).write(true).open(disk)?;
        let sector_size = gptman::linux::get_sector_size(&mut file)
            .map_err(|error| io::Error::other(format!("BLKSSZGET: {error}")))?;
        if sector_size != ztos_image::layout::SECTOR_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{sector_size}-byte sectors (the image's GPT assumes 512)"),
            ));
        }
        let total_sectors = file.seek(SeekFrom::End(0))? / sector_size;
        let outcome =
            ztos_image::gpt::grow_partition_to_end(&mut file, total_sectors, label, |disk| {
                disk.sync_data()
            })
            .map_err(io::Error::other)?;
        if matches!(outcome, GrowOutcome::Grown { .. }) {
            gptman::linux::reread_partition_table(&mut file).map_err(|error| {
                let errno = match &error {
                    gptman::linux::BlockError::RereadTable(errno) => format!(": {errno}"),
                    _ => String::new(),
                };
                io::Error::other(format!(
                    "the table is grown on disk, but the kernel did not re-read it ({error}{errno}); it will after a reboot"
                ))
            })?;
        }
        Ok(outcome)
    }

    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn switch_root(&mut self, new_root: &Path) -> io::Result<()> {
        chdir(new_root)?;
        nix::mount::mount(
            Some(new_root),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )?;
        chroot(".")?;
        chdir("/")?;
        Ok(())
    }

    fn exec(&mut self, path: &Path, args: &[&str]) -> io::Error {
        Command::new(path).args(args).exec()
    }

    fn load_module(&mut self, path: &Path, params: &str) -> io::Result<()> {
        let file = File::open(path)?;
        let params = std::ffi::CString::new(params)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "nul in module parameters"))?;
        finit_module(&file, &params, ModuleInitFlags::empty()).map_err(io::Error::from)
    }

    fn kernel_release(&mut self) -> io::Result<String> {
        let uts = nix::sys::utsname::uname()?;
        Ok(uts.release().to_string_lossy().into_owned())
    }

    fn sethostname(&mut self, name: &str) -> io::Result<()> {
        nix::unistd::sethostname(name).map_err(io::Error::from)
    }

    fn set_loopback_up(&mut self) -> io::Result<()> {
        set_link_up("lo")
    }

    fn run(&mut self, command: &Path, args: &[&str]) -> io::Result<i32> {
        let status = Command::new(command).args(args).status()?;
        match (status.code(), status.signal()) {
            (Some(code), _) => Ok(code),
            (None, Some(signal)) => Err(io::Error::other(format!("killed by signal {signal}"))),
            (None, None) => Err(io::Error::other(format!("ended with {status}"))),
        }
    }

    fn random_bytes(&mut self, len: usize) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0; len];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(io::Error::other)?;
        Ok(bytes)
    }

    fn root_is_initramfs(&mut self) -> io::Result<bool> {
        let magic = nix::sys::statfs::statfs("/")?.filesystem_type().0 as i64;
        Ok(magic == RAMFS_MAGIC || magic == TMPFS_MAGIC)
    }

    fn reap_zombies(&mut self) -> usize {
        let mut reaped = 0;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return reaped,
                Ok(_) => reaped += 1,
            }
        }
    }

    fn console(&mut self, line: &str) {
        // Both are best effort: there is nobody to tell if the console itself is gone.
        if let Ok(mut console) = OpenOptions::new().write(true).open("/dev/console") {
            let _ = writeln!(console, "{line}");
        }
        if let Ok(mut kmsg) = OpenOptions::new().write(true).open("/dev/kmsg") {
            // <5> is "notice": kept in the kernel log, not repeated on a quiet console.
            let _ = write!(kmsg, "<5>{line}");
        }
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn sync(&mut self) {
        nix::unistd::sync();
    }

    fn reboot(&mut self, kind: RebootKind) -> io::Error {
        let mode = match kind {
            RebootKind::Reboot => RebootMode::RB_AUTOBOOT,
            RebootKind::PowerOff => RebootMode::RB_POWER_OFF,
        };
        match nix::sys::reboot::reboot(mode) {
            Err(errno) => io::Error::from(errno),
            Ok(never) => match never {},
        }
    }

    fn open_watchdog(&mut self, path: &Path) -> io::Result<Box<dyn Watchdog>> {
        let file = OpenOptions::new().write(true).open(path)?;
        Ok(Box::new(WatchdogFile { file }))
    }
}

/// An open `/dev/watchdog`: any write is a keepalive (Documentation/watchdog/watchdog-api.rst).
struct WatchdogFile {
    file: File,
}

impl Watchdog for WatchdogFile {
    fn pet(&mut self) -> io::Result<()> {
        self.file.write_all(b"k")
    }

    fn close(mut self: Box<Self>) -> io::Result<()> {
        // "Magic close": a 'V' before close stops the countdown.
        self.file.write_all(b"V")
    }
}

/// Sets a link up with one rtnetlink `RTM_NEWLINK` request (`ifi_flags = ifi_change =
/// IFF_UP`) and waits for the kernel's acknowledgement. Hand-encoded: 32 bytes do not justify
/// an async netlink stack in PID 1.
fn set_link_up(name: &str) -> io::Result<()> {
    let index = nix::net::if_::if_nametoindex(name)?;
    let socket = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let kernel = NetlinkAddr::new(0, 0);
    bind(socket.as_raw_fd(), &kernel)?;
    let request = link_up_request(index, 1);
    sendto(socket.as_raw_fd(), &request, &kernel, MsgFlags::empty())?;
    let mut reply = [0u8; 4096];
    let len = recv(socket.as_raw_fd(), &mut reply, MsgFlags::empty())?;
    parse_ack(&reply[..len])
}

const NLMSG_HEADER_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const IFF_UP: u32 = 0x1;

/// `struct nlmsghdr` + `struct ifinfomsg`, native endian as netlink wants.
fn link_up_request(index: u32, sequence: u32) -> Vec<u8> {
    let mut message = Vec::with_capacity(NLMSG_HEADER_LEN + IFINFOMSG_LEN);
    message.extend_from_slice(&((NLMSG_HEADER_LEN + IFINFOMSG_LEN) as u32).to_ne_bytes());
    message.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    message.extend_from_slice(&sequence.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    message.push(0); // ifi_family AF_UNSPEC
    message.push(0); // padding
    message.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    message.extend_from_slice(&(index as i32).to_ne_bytes());
    message.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    message.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    message
}

/// Reads the `NLMSG_ERROR` acknowledgement: error 0 is success, otherwise a negative errno.
fn parse_ack(reply: &[u8]) -> io::Result<()> {
    let short = || io::Error::new(io::ErrorKind::InvalidData, "short netlink reply");
    let message_type = u16::from_ne_bytes(
        reply
            .get(4..6)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    );
    if message_type != NLMSG_ERROR {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected netlink reply type {message_type}"),
        ));
    }
    let error = i32::from_ne_bytes(
        reply
            .get(NLMSG_HEADER_LEN..NLMSG_HEADER_LEN + 4)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    );
    match error {
        0 => Ok(()),
        negative => Err(io::Error::from(Errno::from_raw(-negative))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_link_up_request_is_a_newlink_with_iff_up() {
        let request = link_up_request(1, 7);
        assert_eq!(request.len(), 32);
        assert_eq!(u32::from_ne_bytes(request[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(request[4..6].try_into().unwrap()), 16);
        assert_eq!(u16::from_ne_bytes(request[6..8].try_into().unwrap()), 5);
        assert_eq!(u32::from_ne_bytes(request[8..12].try_into().unwrap()), 7);
        assert_eq!(i32::from_ne_bytes(request[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(request[24..28].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(request[28..32].try_into().unwrap()), 1);
    }

    #[test]
    fn boot_real_loopback_comes_up_in_a_new_network_namespace() {
        if !nix::unistd::Uid::effective().is_root() {
            // CI runs as root; skipping is only for a developer who asked for it.
            assert!(
                std::env::var_os("ZTOS_SKIP_ROOT_TESTS").is_some_and(|v| v == "1"),
                "this test needs root for a network namespace; set ZTOS_SKIP_ROOT_TESTS=1 to skip"
            );
            return;
        }
        // A network namespace belongs to the thread that unshares it; this one ends with it.
        std::thread::spawn(|| {
            let lo_is_up = || {
                nix::ifaddrs::getifaddrs()
                    .unwrap()
                    .filter(|a| a.interface_name == "lo")
                    .any(|a| a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP))
            };
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            assert!(!lo_is_up(), "lo starts down in a new namespace");
            RealSyscalls::new().set_loopback_up().unwrap();
            assert!(lo_is_up());
            // Again: setting an up link up is fine.
            RealSyscalls::new().set_loopback_up().unwrap();
        })
        .join()
        .unwrap();
    }

    #[test]
    fn boot_netlink_ack_errors_become_errnos() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert!(parse_ack(&ack).is_ok());
        ack[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(parse_ack(&ack).unwrap_err().raw_os_error(), Some(1));
        assert!(parse_ack(&ack[..10]).is_err());
        ack[4..6].copy_from_slice(&16u16.to_ne_bytes());
        assert!(parse_ack(&ack).is_err());
    }
}
