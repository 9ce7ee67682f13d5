//! The few host tools the builder runs (ldd, strip, mksquashfs, mkfs.ext4, qemu-img), each
//! behind a function that turns a failure into a [`HostToolError`] naming the command.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum HostToolError {
    #[error("running {command}: {source} (is it installed? `just deps`)")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

/// Runs `command`, returning its stdout; a non-zero exit is an error carrying stderr.
pub fn run(command: &mut Command) -> Result<Vec<u8>, HostToolError> {
    let text = format!("{command:?}");
    let output = command.output().map_err(|source| HostToolError::Spawn {
        command: text.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(HostToolError::Failed {
            command: text,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output.stdout)
}

/// Parses `ldd` output into the absolute paths of the shared libraries and the loader.
pub fn parse_ldd(output: &str) -> Vec<PathBuf> {
    let mut libraries = Vec::new();
    for line in output.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, resolved)) => resolved.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        }
    }
    libraries.sort();
    libraries.dedup();
    libraries
}

/// The shared libraries and loader `binary` needs; empty for a static binary.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, HostToolError> {
    let text = format!("ldd {}", binary.display());
    let output =
        Command::new("ldd")
            .arg(binary)
            .output()
            .map_err(|source| HostToolError::Spawn {
                command: text.clone(),
                source,
            })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // glibc's ldd exits 1 with "not a dynamic executable" for static binaries.
        if stdout.contains("not a dynamic executable")
            || stderr.contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        return Err(HostToolError::Failed {
            command: text,
            status: output.status.to_string(),
            stderr: stderr.trim().to_string(),
        });
    }
    Ok(parse_ldd(&stdout))
}

/// The contents of `binary` with all symbols and debug information stripped.
pub fn stripped(binary: &Path, scratch: &Path) -> Result<Vec<u8>, HostToolError> {
    let out = scratch.join(format!(
        "stripped-{}",
        binary.file_name().unwrap_or_default().to_string_lossy()
    ));
    run(Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&out)
        .arg(binary))?;
    std::fs::read(&out).map_err(|source| HostToolError::Spawn {
        command: format!("reading {}", out.display()),
        source,
    })
}

/// Where a host library goes in a merged-/usr image tree: `/lib/x` and `/lib64/x` move under
/// `usr/` (the image has `lib -> usr/lib` and `lib64 -> usr/lib64`), `/usr/x` stays.
pub fn image_path_of_library(path: &Path) -> String {
    let text = path.to_string_lossy();
    let relative = text.trim_start_matches('/');
    if relative.starts_with("usr/") {
        relative.to_string()
    } else {
        format!("usr/{relative}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_libraries_and_the_loader() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                      \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1)\n\
                      \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)\n\
                      \t/lib64/ld-linux-x86-64.so.2 (0x00007f3)\n";
        assert_eq!(
            parse_ldd(output),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert_eq!(
            image_path_of_library(Path::new("/lib64/ld-linux-x86-64.so.2")),
            "usr/lib64/ld-linux-x86-64.so.2"
        );
        assert_eq!(
            image_path_of_library(Path::new("/usr/lib/x86_64-linux-gnu/libz.so.1")),
            "usr/lib/x86_64-linux-gnu/libz.so.1"
        );
    }

    #[test]
    fn failures_name_the_command() {
        let err = run(Command::new("false").arg("--flag")).unwrap_err();
        assert!(err.to_string().contains("\"false\" \"--flag\""), "{err}");
        let err = run(&mut Command::new("/nonexistent/tool")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/tool"), "{err}");
    }
}
