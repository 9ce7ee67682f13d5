//! The baseline of `just bench-boot`: the least an init can do. It mounts devtmpfs so it has a
//! console, prints a marker there, and waits. Built as a static binary with plain rustc.

use std::io::Write;

extern "C" {
    fn mount(
        source: *const std::ffi::c_char,
        target: *const std::ffi::c_char,
        fstype: *const std::ffi::c_char,
        flags: std::ffi::c_ulong,
        data: *const std::ffi::c_void,
    ) -> std::ffi::c_int;
}

fn main() {
    let _ = std::fs::create_dir("/dev");
    // SAFETY: the arguments are NUL-terminated static strings and a null data pointer;
    // mount(2) does not keep them.
    unsafe {
        mount(c"devtmpfs".as_ptr(), c"/dev".as_ptr(), c"devtmpfs".as_ptr(), 0, std::ptr::null());
    }
    if let Ok(mut console) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
        let _ = writeln!(console, "TRIVIAL-INIT-READY");
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
