//! The VM harness: boots a ZTOS image under qemu (TCG only: KVM guests hang on the CI hosts)
//! with UEFI (OVMF), a virtio disk that is a throw-away qcow2 overlay of the image, an
//! i6300esb watchdog and user-mode networking forwarding a loopback port to the guest's HTTPS
//! port. The serial console is a unix socket: a reader thread records everything into a log
//! file and a buffer that [`Vm::wait_for`] searches; [`Vm::send`] types on it. Dropping a
//! [`Vm`] kills qemu (a power cut) and removes its files, even when a test panics.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// OVMF firmware from Debian's `ovmf` package (4 MiB variant, no Secure Boot keys).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The image `just image` writes.
pub fn default_image() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/image/ztos.qcow2")
}

#[derive(Default)]
struct Console {
    output: Vec<u8>,
    closed: bool,
}

/// A running ZTOS VM.
pub struct Vm {
    child: Child,
    /// The qcow2 the overlay is based on.
    image: PathBuf,
    dir: tempfile::TempDir,
    console: Arc<(Mutex<Console>, Condvar)>,
    serial: UnixStream,
    /// Byte offset in the console output after the last [`Vm::wait_for`] match.
    cursor: usize,
    https_port: u16,
    started: Instant,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("dir", &self.dir.path())
            .field("https_port", &self.https_port)
            .finish()
    }
}

/// One slot (`"a"` or `"b"`) of a `GET /api/v1/system/slots` answer (`Null` if absent).
pub fn slot<'a>(slots: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    slots["slots"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["slot"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

/// How long one console step (a prompt, a command's answer) may take under TCG.
pub const CONSOLE_STEP: Duration = Duration::from_secs(60);

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The qemu command line for a ZTOS image, shared by the tests and `ztos-lab vm`: TCG (KVM
/// guests hang on these hosts), q35, UEFI from OVMF with a fresh copy of the variables in `dir`,
/// a throw-away qcow2 overlay of `image` in `dir` on virtio, an i6300esb watchdog, and user-mode
/// networking forwarding `https_forward` (`127.0.0.1:PORT`, loopback only) to the guest's 443.
/// The caller adds the serial console.
pub fn qemu_command(image: &Path, dir: &Path, https_forward: &str) -> anyhow::Result<Command> {
    let overlay = dir.join("disk.qcow2");
    let vars = dir.join("OVMF_VARS.fd");
    if !overlay.exists() {
        create_overlay(image, &overlay)?;
        std::fs::copy(OVMF_VARS, &vars).with_context(|| format!("copying {OVMF_VARS}"))?;
    }
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args([
            "-accel", "tcg", "-machine", "q35", "-m", "1024", "-smp", "2",
        ])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=qcow2", overlay.display()))
        .args(["-device", "i6300esb"])
        .arg("-netdev")
        .arg(format!("user,id=n0,hostfwd=tcp:{https_forward}-:443"))
        .args(["-device", "virtio-net-pci,netdev=n0"]);
    Ok(command)
}

/// A throw-away qcow2 `overlay` backed by `image`: the guest's writes land in the overlay.
pub fn create_overlay(image: &Path, overlay: &Path) -> anyhow::Result<()> {
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(image)
        .arg(overlay)
        .status()
        .context("running qemu-img create (apt-get install qemu-utils)")?;
    if !status.success() {
        bail!(
            "qemu-img create of an overlay of {} failed",
            image.display()
        );
    }
    Ok(())
}

/// Where an ext4 superblock starts in its filesystem, its size, and where its magic number
/// (0xEF53, little-endian) lies inside it.
const EXT4_SUPERBLOCK: u64 = 1024;
const EXT4_SUPERBLOCK_SIZE: usize = 1024;
const EXT4_MAGIC_AT: usize = 56;

/// Zeroes the ext4 superblock of the partition labelled `label` in the raw disk `disk`, found
/// through the disk's GPT; returns the superblock's byte offset in the disk. Refuses a
/// partition that holds no ext4 superblock, so a changed layout cannot go unnoticed.
pub fn zero_ext4_superblock(disk: &Path, label: &str) -> anyhow::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .with_context(|| format!("opening {}", disk.display()))?;
    let sectors = file.metadata()?.len() / ztos_image::layout::SECTOR_SIZE;
    let gpt = ztos_image::gpt::Gpt::read_from(&mut file, sectors)
        .with_context(|| format!("reading the GPT of {}", disk.display()))?;
    let partition = gpt
        .partitions
        .iter()
        .find(|p| p.name == label)
        .with_context(|| format!("no partition labelled {label} in {}", disk.display()))?;
    let offset = partition.offset_bytes() + EXT4_SUPERBLOCK;
    let mut superblock = [0u8; EXT4_SUPERBLOCK_SIZE];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut superblock)?;
    let magic = &superblock[EXT4_MAGIC_AT..EXT4_MAGIC_AT + 2];
    if magic != [0x53, 0xef] {
        bail!(
            "partition {label} of {} holds no ext4 superblock at byte {offset} (magic {magic:02x?})",
            disk.display()
        );
    }
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(&[0u8; EXT4_SUPERBLOCK_SIZE])?;
    file.sync_all()?;
    Ok(offset)
}

/// A copy of the qcow2 `image` in `dir` whose perm filesystem (`ztos-perm`) has its superblock
/// zeroed: `e2fsck -p` cannot repair it (exit 8) and ext4 cannot mount it. Converted to raw,
/// patched, converted back; returns the new qcow2.
pub fn image_with_corrupted_perm(image: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let raw = dir.join("corrupted.raw");
    let qcow2 = dir.join("corrupted.qcow2");
    qemu_img_convert(image, "raw", &raw)?;
    zero_ext4_superblock(&raw, ztos_image::layout::PERM_LABEL)?;
    qemu_img_convert(&raw, "qcow2", &qcow2)?;
    std::fs::remove_file(&raw).with_context(|| format!("removing {}", raw.display()))?;
    Ok(qcow2)
}

fn qemu_img_convert(from: &Path, format: &str, to: &Path) -> anyhow::Result<()> {
    let status = Command::new("qemu-img")
        .args(["convert", "-O", format])
        .arg(from)
        .arg(to)
        .status()
        .context("running qemu-img convert (apt-get install qemu-utils)")?;
    if !status.success() {
        bail!(
            "qemu-img convert -O {format} {} {} failed ({status})",
            from.display(),
            to.display()
        );
    }
    Ok(())
}

/// Starts qemu on `dir`'s overlay of `image` (made on first use) with the serial console on a
/// unix socket in `dir`, and a thread appending what the console prints to `console` and to
/// `dir/serial.log`.
fn spawn_qemu(
    image: &Path,
    dir: &Path,
    https_port: u16,
    console: &Arc<(Mutex<Console>, Condvar)>,
) -> anyhow::Result<(Child, UnixStream)> {
    let socket = dir.join("serial.sock");
    let _ = std::fs::remove_file(&socket);
    let child = qemu_command(image, dir, &format!("127.0.0.1:{https_port}"))?
        .arg("-chardev")
        .arg(format!(
            "socket,id=serial0,path={},server=on,wait=on",
            socket.display()
        ))
        .args([
            "-serial",
            "chardev:serial0",
            "-nographic",
            "-monitor",
            "none",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("qemu.stderr"))
                .context("creating qemu.stderr")?,
        )
        .spawn()
        .context("starting qemu-system-x86_64 (apt-get install qemu-system-x86 ovmf)")?;
    let started = Instant::now();
    let mut vm_child = Some(child);
    // qemu waits (wait=on) until the harness is connected, so no output is lost.
    let serial = loop {
        match UnixStream::connect(&socket) {
            Ok(stream) => break stream,
            Err(_) if started.elapsed() < Duration::from_secs(20) => {
                if let Some(Ok(Some(status))) = vm_child.as_mut().map(|c| c.try_wait()) {
                    let stderr =
                        std::fs::read_to_string(dir.join("qemu.stderr")).unwrap_or_default();
                    bail!("qemu exited at start ({status}): {stderr}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                if let Some(mut c) = vm_child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                bail!("connecting to qemu's serial socket: {e}");
            }
        }
    };
    let mut reader = serial.try_clone().context("cloning the serial socket")?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serial.log"))
        .context("creating serial.log")?;
    let shared = Arc::clone(console);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let n = reader.read(&mut buf).unwrap_or(0);
            let (lock, wake) = &*shared;
            let mut console = lock.lock().expect("console lock");
            if n == 0 {
                console.closed = true;
                wake.notify_all();
                return;
            }
            let _ = log.write_all(&buf[..n]);
            console.output.extend_from_slice(&buf[..n]);
            wake.notify_all();
        }
    });
    Ok((vm_child.expect("qemu is running"), serial))
}

impl Vm {
    /// Boots `image` (a qcow2) through a fresh overlay and fresh UEFI variables.
    pub fn start(image: &Path) -> anyhow::Result<Vm> {
        if !image.is_file() {
            bail!(
                "no image at {} (build it with `just image`)",
                image.display()
            );
        }
        let image = image
            .canonicalize()
            .with_context(|| format!("resolving {}", image.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("ztos-vm-")
            .tempdir()
            .context("creating the VM directory")?;
        let https_port = free_port()?;
        let console = Arc::new((Mutex::new(Console::default()), Condvar::new()));
        let (child, serial) = spawn_qemu(&image, dir.path(), https_port, &console)?;
        Ok(Vm {
            child,
            image,
            dir,
            console,
            serial,
            cursor: 0,
            https_port,
            started: Instant::now(),
        })
    }

    /// Powers the VM on again after [`Vm::power_cut`] (or after it powered itself off), on the
    /// same disk overlay, UEFI variables and forwarded port: what the guest had written before
    /// the cut is still there. The console log goes on in the same buffer.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        {
            let mut console = self.console.0.lock().expect("console lock");
            console.closed = false;
        }
        let (child, serial) =
            spawn_qemu(&self.image, self.dir.path(), self.https_port, &self.console)?;
        self.child = child;
        self.serial = serial;
        self.cursor = self.console.0.lock().expect("console lock").output.len();
        self.started = Instant::now();
        Ok(())
    }

    /// The loopback port forwarded to the guest's port 443.
    pub fn https_port(&self) -> u16 {
        self.https_port
    }

    /// Time since qemu started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Everything the serial console printed so far, escape sequences removed.
    pub fn console_text(&self) -> String {
        let console = self.console.0.lock().expect("console lock");
        strip_escapes(&String::from_utf8_lossy(&console.output))
    }

    /// The last `lines` lines of the console, for error messages.
    pub fn console_tail(&self, lines: usize) -> String {
        let text = self.console_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until `needle` appears on the console after the previous match, for at most
    /// `timeout`; the error carries the console's tail.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + timeout;
        let (lock, wake) = &*self.console;
        let mut console = lock.lock().expect("console lock");
        loop {
            let raw = &console.output[self.cursor.min(console.output.len())..];
            let text = String::from_utf8_lossy(raw);
            if strip_escapes(&text).contains(needle) {
                // Resume after the match; when escapes split it, after everything seen.
                self.cursor += match text.find(needle) {
                    Some(i) if text.len() == raw.len() => i + needle.len(),
                    _ => raw.len(),
                };
                return Ok(self.started.elapsed());
            }
            let now = Instant::now();
            if console.closed || now >= deadline {
                drop(console);
                bail!(
                    "{needle:?} did not appear on the console within {timeout:?}{}; last lines:\n{}",
                    if self.console.0.lock().expect("console lock").closed { " (qemu exited)" } else { "" },
                    self.console_tail(30)
                );
            }
            console = wake
                .wait_timeout(console, deadline - now)
                .expect("console lock")
                .0;
        }
    }

    /// Types `text` on the serial console.
    pub fn send(&mut self, text: &str) -> anyhow::Result<()> {
        self.serial
            .write_all(text.as_bytes())
            .context("writing to the serial console")
    }

    /// Types `line` and Enter.
    pub fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        self.send(&format!("{line}\r"))
    }

    /// GET `path` over HTTPS through the forwarded port (certificate not checked: the box makes
    /// a self-signed one on first boot); returns the status code and body.
    pub fn https_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let output = Command::new("curl")
            .args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"])
            .arg(format!("https://127.0.0.1:{}{path}", self.https_port))
            .output()
            .context("running curl")?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "000"));
        Ok((code.trim().parse().unwrap_or(0), body.to_string()))
    }

    /// Runs this machine's `ztos` CLI against the VM through the forwarded port with an API
    /// token (`--insecure`: the box's CA is not on this machine); returns whether it succeeded
    /// and its stdout and stderr together.
    pub fn ztos(&self, token: &str, args: &[&str]) -> anyhow::Result<(bool, String)> {
        let output = Command::new(crate::lab::binary("ztos"))
            .args(["--host", &format!("https://127.0.0.1:{}", self.https_port)])
            .args(["--token", token, "--insecure"])
            .args(args)
            .output()
            .context("running ztos")?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Ok((output.status.success(), text))
    }

    /// Polls `path` until it answers 200, for at most `timeout`.
    pub fn wait_for_https(&self, path: &str, timeout: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = self.https_get(path) {
                return Ok(self.started.elapsed());
            }
            if Instant::now() >= deadline {
                bail!(
                    "https://127.0.0.1:{}{path} did not answer 200 within {timeout:?}; console:\n{}",
                    self.https_port,
                    self.console_tail(30)
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Pulls the plug: SIGKILL to qemu. The overlay keeps what the guest had written.
    pub fn power_cut(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        self.child.wait().context("waiting for qemu")?;
        Ok(())
    }

    /// Waits for qemu to exit by itself (the guest powered off), for at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("polling qemu")? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "qemu still running after {timeout:?}; console:\n{}",
                    self.console_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// First boot on the console: waits for the admin password prompt and sets `password`
    /// (asked twice).
    pub fn set_first_password(&mut self, password: &str, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for("new password for admin: ", timeout)?;
        self.send_line(password)?;
        self.wait_for("repeat the new password for admin: ", CONSOLE_STEP)?;
        self.send_line(password)?;
        self.wait_for("admin password set", CONSOLE_STEP)?;
        Ok(())
    }

    /// Logs in as admin on the console of the box named `hostname`, waiting up to `timeout`
    /// for the login prompt.
    pub fn login(
        &mut self,
        hostname: &str,
        password: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_for(&format!("{hostname} login: "), timeout)?;
        self.send_line("admin")?;
        self.wait_for("assword", CONSOLE_STEP)?;
        self.send_line(password)?;
        self.wait_for(&format!("{hostname}> "), CONSOLE_STEP)?;
        Ok(())
    }

    /// Types a `ztos` shell command on the console, waits for `expect` in its output and then
    /// for the next prompt of `hostname`.
    pub fn run_console(
        &mut self,
        hostname: &str,
        command: &str,
        expect: &str,
    ) -> anyhow::Result<()> {
        self.send_line(command)?;
        self.wait_for(expect, CONSOLE_STEP)
            .with_context(|| format!("`{command}`"))?;
        self.wait_for(&format!("{hostname}> "), CONSOLE_STEP)?;
        Ok(())
    }

    /// Creates an API token with `role` on the (logged-in) console and returns its secret.
    pub fn create_token(
        &mut self,
        hostname: &str,
        name: &str,
        role: &str,
    ) -> anyhow::Result<String> {
        self.run_console(
            hostname,
            &format!("token create {name} --role {role}"),
            "shown only now",
        )?;
        let console = self.console_text();
        console
            .split_whitespace()
            .rev()
            .find(|word| word.starts_with("ztos_"))
            .map(str::to_string)
            .context("no token secret on the console")
    }

    /// First boot of a factory box as an operator does it on the console: the admin
    /// `password`, login, and an admin API token, whose secret is returned once the HTTPS API
    /// answers through the forwarded port. The management address comes by DHCP from QEMU's
    /// user network (the factory configuration's `management_dhcp = "auto"`).
    pub fn first_boot(&mut self, password: &str, timeout: Duration) -> anyhow::Result<String> {
        self.set_first_password(password, timeout)?;
        self.login("ztos", password, timeout)?;
        let token = self.create_token("ztos", "admin-api", "admin")?;
        self.wait_for_https("/health", timeout)?;
        Ok(token)
    }

    /// An HTTPS request to the VM's API with a bearer token, through curl (`extra`: more curl
    /// arguments, e.g. a body); returns the status code (0 when nothing answered) and the body.
    pub fn api(&self, token: &str, method: &str, path: &str, extra: &[&str]) -> (u16, String) {
        let output = Command::new("curl")
            .args(["-sk", "--max-time", "600", "-X", method])
            .args(["-w", "\n%{http_code}"])
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .args(extra)
            .arg(format!("https://127.0.0.1:{}{path}", self.https_port))
            .output();
        let Ok(output) = output else {
            return (0, "curl did not run".to_string());
        };
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "000"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// GET `path` as JSON; `None` unless it answered 200 with JSON.
    pub fn api_json(&self, token: &str, path: &str) -> Option<serde_json::Value> {
        match self.api(token, "GET", path, &[]) {
            (200, body) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// Streams the file `bundle` to `POST /api/v1/system/update?{query}`.
    pub fn upload_update(&self, token: &str, bundle: &Path, query: &str) -> (u16, String) {
        self.api(
            token,
            "POST",
            &format!("/api/v1/system/update?{query}"),
            &[
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &format!("@{}", bundle.display()),
            ],
        )
    }

    /// Polls `GET /api/v1/system/slots` until `done` holds, across reboots (no answer counts as
    /// not yet), for at most `limit`; the error names `what`, the last answer and the console.
    pub fn wait_slots(
        &self,
        token: &str,
        limit: Duration,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = Instant::now() + limit;
        let mut last = serde_json::Value::Null;
        loop {
            if let Some(slots) = self.api_json(token, "/api/v1/system/slots") {
                if done(&slots) {
                    return Ok(slots);
                }
                last = slots;
            }
            if Instant::now() >= deadline {
                bail!(
                    "{what}: not reached within {limit:?}; last slots: {last}\nconsole:\n{}",
                    self.console_tail(40)
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// The directory holding the overlay, UEFI variables and serial.log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("VM console (last lines):\n{}", self.console_tail(60));
        }
    }
}

/// Removes ANSI escape sequences (CSI and two-byte ones) and carriage returns.
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters up to a final byte in '@'..='~'.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // Character set selection: one more byte.
                Some('(' | ')') => {
                    chars.next();
                }
                _ => {}
            },
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_carriage_returns_are_removed() {
        assert_eq!(
            strip_escapes("\u{1b}[2J\u{1b}[01;01Hlogin:\r\n\u{1b}(B ok"),
            "login:\n ok"
        );
    }

    /// A 4 MiB disk with one partition labelled `label` at 1 MiB, holding `superblock` at
    /// the ext4 superblock's place.
    fn small_disk(dir: &Path, label: &str, superblock: &[u8]) -> PathBuf {
        use std::io::{Seek, SeekFrom};
        use ztos_image::gpt::{Gpt, GptPartition};
        use ztos_image::guid::Guid;
        let path = dir.join("disk.raw");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(4 << 20).unwrap();
        let gpt = Gpt {
            disk_guid: Guid::derive(&["disk"]),
            total_sectors: 8192,
            partitions: vec![GptPartition {
                type_guid: Guid::parse(ztos_image::layout::PERM_TYPE_GUID).unwrap(),
                unique_guid: Guid::derive(&["perm"]),
                first_lba: 2048,
                last_lba: 6143,
                attributes: 0,
                name: label.to_string(),
            }],
        };
        gpt.write_to(&mut file).unwrap();
        file.seek(SeekFrom::Start((1 << 20) + EXT4_SUPERBLOCK))
            .unwrap();
        file.write_all(superblock).unwrap();
        path
    }

    #[test]
    fn the_perm_superblock_is_found_through_the_gpt_and_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        let mut superblock = vec![0xaa; EXT4_SUPERBLOCK_SIZE];
        superblock[EXT4_MAGIC_AT..EXT4_MAGIC_AT + 2].copy_from_slice(&[0x53, 0xef]);
        let disk = small_disk(dir.path(), "ztos-perm", &superblock);
        let offset = zero_ext4_superblock(&disk, "ztos-perm").unwrap();
        assert_eq!(offset, (1 << 20) + 1024);
        let bytes = std::fs::read(&disk).unwrap();
        let at = offset as usize;
        assert!(bytes[at..at + EXT4_SUPERBLOCK_SIZE].iter().all(|&b| b == 0));
        assert_eq!(bytes[at - 1], 0, "nothing before the superblock changed");
        assert_eq!(&bytes[512..520], b"EFI PART", "the GPT is intact");

        // Zeroed once, there is no superblock left to find; nor is there another label.
        let err = zero_ext4_superblock(&disk, "ztos-perm").unwrap_err();
        assert!(
            err.to_string().contains("partition ztos-perm of ")
                && err
                    .to_string()
                    .contains("holds no ext4 superblock at byte 1049600"),
            "{err}"
        );
        let err = zero_ext4_superblock(&disk, "ztos-root-a").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no partition labelled ztos-root-a in "),
            "{err}"
        );
    }

    #[test]
    fn a_missing_image_is_named() {
        let err = Vm::start(Path::new("/nonexistent/ztos.qcow2")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ztos.qcow2"), "{err}");
    }
}
