//! The console as an operator meets it, against a real ztosd in a network namespace:
//! `ztos console --stdio` driven through pipes. First boot sets the admin password, a wrong
//! password is refused, the right one gives the shell, commands run with the logged-in user's
//! role, and logout returns to the login prompt.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ztos_tests::lab::{binary, Lab};

const CONFIG: &str = r#"
[system]
hostname = "leaf1"

[[interfaces]]
name = "lo"
kind = "loopback"
"#;

/// How long one expected piece of output may take (a login hashes a password).
const EXPECT_WAIT: Duration = Duration::from_secs(20);

/// A console process with its output collected by a reader thread.
struct Console {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<(Mutex<String>, Condvar)>,
    /// How much of the output earlier expectations consumed.
    seen: usize,
}

impl Console {
    fn start(socket: &std::path::Path) -> Console {
        let mut child = Command::new(binary("ztos"))
            .args(["console", "--stdio", "--hostname", "leaf1", "--socket"])
            .arg(socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting ztos console");
        let output = Arc::new((Mutex::new(String::new()), Condvar::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let chunk = match reader.fill_buf() {
                        Ok([]) | Err(_) => return,
                        Ok(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    };
                    reader.consume(chunk.len());
                    let (text, changed) = &*output;
                    text.lock().unwrap().push_str(&chunk);
                    changed.notify_all();
                }
            });
        }
        Console {
            stdin: child.stdin.take(),
            child,
            output,
            seen: 0,
        }
    }

    /// Waits until `needle` appears after what earlier calls consumed, and returns the output
    /// up to and including it.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + EXPECT_WAIT;
        let (text, changed) = &*self.output;
        let mut text = text.lock().unwrap();
        loop {
            if let Some(index) = text[self.seen..].find(needle) {
                let end = self.seen + index + needle.len();
                let consumed = text[self.seen..end].to_string();
                self.seen = end;
                return consumed;
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "console did not print {needle:?}; it printed after the last match:\n{}",
                &text[self.seen..]
            );
            text = changed.wait_timeout(text, deadline - now).unwrap().0;
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("writing to the console");
        stdin.flush().unwrap();
    }

    fn login(&mut self, name: &str, password: &str) {
        self.expect("leaf1 login: ");
        self.send(name);
        self.expect("Password: ");
        self.send(password);
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn console_first_boot_login_roles_and_logout() {
    let Some(lab) = Lab::new_if_root("console") else {
        return;
    };
    let node = lab.node("n1").start_ztosd(CONFIG);
    let mut console = Console::start(&node.api_socket());

    // First boot: no users, so the console asks for the admin password; rules are checked.
    console.expect("no admin password yet");
    console.expect("new password for admin: ");
    console.send("short");
    console.expect("password for admin is too short: use at least 8 characters");
    console.expect("new password for admin: ");
    console.send("first-admin-pw");
    console.expect("repeat the new password for admin: ");
    console.send("first-admin-pw");
    console.expect("admin password set");

    // A wrong password is refused and gives no shell.
    console.login("admin", "not-the-password");
    let refused = console.expect("Login incorrect");
    assert!(!refused.contains("leaf1> "), "{refused}");

    console.login("admin", "first-admin-pw");
    console.expect("Logged in as admin (admin)");
    console.expect("leaf1> ");
    console.send("security status");
    let status = console.expect("policy rules:");
    assert!(status.contains("SERVICE"), "{status}");
    assert!(status.contains("wireguard"), "{status}");
    console.expect("leaf1> ");
    console.send("config show");
    let shown = console.expect("leaf1> ");
    assert!(shown.contains("hostname = \"leaf1\""), "{shown}");

    // An admin makes a read-only user from the console.
    console.send("user passwd viewer --role read");
    console.expect("new password for viewer: ");
    console.send("viewer-password");
    console.expect("repeat the new password for viewer: ");
    console.send("viewer-password");
    console.expect("password of viewer (read) set");
    console.send("logout");
    console.expect("logged out");

    // The read-only user can look but not change anything.
    console.login("viewer", "viewer-password");
    console.expect("Logged in as viewer (read)");
    console.expect("leaf1> ");
    console.send("config set system.hostname evil");
    let denied = console.expect("leaf1> ");
    assert!(denied.contains("error: "), "{denied}");
    assert!(
        denied.contains("user:viewer has role read, this needs admin"),
        "{denied}"
    );
    console.send("config show");
    let shown = console.expect("leaf1> ");
    assert!(shown.contains("hostname = \"leaf1\""), "{shown}");
    assert!(!shown.contains("evil"), "{shown}");
    // Escaping the session through another socket is refused.
    console.send(&format!(
        "config show --socket {}",
        node.api_socket().display()
    ));
    console.expect("--socket is not available on the console");

    // `exit` logs out back to the login prompt; the session no longer works.
    console.send("exit");
    console.expect("logged out");
    console.expect("leaf1 login: ");

    // The end of input ends the console cleanly.
    drop(console.stdin.take());
    let deadline = Instant::now() + EXPECT_WAIT;
    loop {
        if let Some(status) = console.child.try_wait().unwrap() {
            assert!(status.success(), "console exited with {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "console did not exit at end of input"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
    assert!(log.contains("first admin password set"), "{log}");
    assert!(
        log.contains("password of user viewer (read) set by user:admin"),
        "{log}"
    );
}
