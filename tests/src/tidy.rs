//! The tidy checker (after rust-analyzer's xtask/src/tidy.rs): house rules that no compiler
//! enforces, checked over every `.rs` file of the repository found by walking its folders
//! (`target/` and hidden folders skipped). Each breach is a [`Violation`] naming file and line.
//!
//! ```text
//!   check(root)
//!     ├─ walk: every .rs file, its crate (nearest Cargo.toml) and whether it is test code
//!     ├─ module_docs     first line is `//!`
//!     ├─ no_unwrap       no `.unwrap()` in code that is not test code
//!     ├─ rtnetlink       connections opened only where ARCHITECTURE.md's invariant allows
//!     ├─ no_tokio        ztos-model and ztos-bgp-codec neither depend on tokio nor name it
//!     └─ code_map        every file named in ARCHITECTURE.md's "## Code map"
//! ```
//!
//! Test code is a file under a `tests` folder that is not itself a crate (a crate's
//! integration tests, a module's `tests/` folder), a file named `tests.rs` or `*_tests.rs`, and
//! every line from a `#[cfg(test)]` line to the end of its file. Benches, bins and fuzz targets
//! are not test code. Comment lines (`//`, `///`, `//!`) are never code.
//!
//! The system test `tidy` (tests/tests/system/tidy.rs) runs [`check`] on this repository.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// The files that may open an rtnetlink connection, as path prefixes from the repository
/// root. This is ARCHITECTURE.md's invariant "only `ztosd/src/netlink` opens netlink sockets
/// for links, addresses, routes and FDB entries", with its exception for plugin processes,
/// which open their own socket for the state they own (ztos-bgp's routes and EVPN entries,
/// the WireGuard plugin's interfaces). ztos-init brings `lo` up through an ioctl, not
/// rtnetlink. Widen this list only together with that invariant.
pub const RTNETLINK_ALLOWED: &[&str] = &[
    "ztosd/src/netlink/",
    "plugins/bgp/src/kernel.rs",
    "plugins/bgp/src/kernel/",
    "plugins/bgp/src/evpn_kernel",
    "plugins/wireguard/src/plugin.rs",
];

/// Crates (by package name) that must not use tokio: the codec and the model do no I/O.
pub const NO_TOKIO_CRATES: &[&str] = &["ztos-model", "ztos-bgp-codec"];

/// Written in pieces so that this file does not breach its own rules.
const UNWRAP: &str = concat!(".unw", "rap()");
const NEW_CONNECTION: &str = concat!("new_", "connection");
const TOKIO_PATH: &str = concat!("tok", "io::");
const CFG_TEST: &str = concat!("#[cfg", "(test)]");

/// One breach of a rule: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The file, relative to the repository root.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// Why the checker could not check.
#[derive(Debug, thiserror::Error)]
pub enum TidyError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Manifest {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("ARCHITECTURE.md has no \"## Code map\" section")]
    NoCodeMap,
}

/// A crate: its folder and package name, both from its Cargo.toml.
#[derive(Debug)]
struct Crate {
    dir: PathBuf,
    name: String,
    manifest: toml::Table,
    manifest_text: String,
}

/// One `.rs` file, read.
#[derive(Debug)]
struct SourceFile {
    /// Relative to the repository root.
    path: PathBuf,
    text: String,
    /// Index into the crate list; every file belongs to the nearest folder with a Cargo.toml.
    krate: Option<usize>,
    /// The whole file is test code (by its path).
    test_file: bool,
}

impl SourceFile {
    /// (1-based line, text) of the lines that are code: not comments, and before the first
    /// `#[cfg(test)]` unless the whole file is test code (then none).
    fn code_lines(&self) -> impl Iterator<Item = (usize, &str)> {
        let test_file = self.test_file;
        self.text
            .lines()
            .enumerate()
            .take_while(move |(_, line)| !test_file && !line.trim_start().starts_with(CFG_TEST))
            .filter(|(_, line)| !line.trim_start().starts_with("//"))
            .map(|(i, line)| (i + 1, line))
    }
}

/// Runs every rule over the repository at `root`; an empty list means tidy.
pub fn check(root: &Path) -> Result<Vec<Violation>, TidyError> {
    let mut crates = Vec::new();
    let mut files = Vec::new();
    walk(root, Path::new(""), None, false, &mut crates, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut violations = Vec::new();
    module_docs(&files, &mut violations);
    no_unwrap(&files, &mut violations);
    rtnetlink(&files, &mut violations);
    no_tokio(&crates, &files, &mut violations);
    let architecture = root.join("ARCHITECTURE.md");
    let architecture = fs::read_to_string(&architecture).map_err(|source| TidyError::Read {
        path: architecture,
        source,
    })?;
    code_map(&architecture, &crates, &files, &mut violations)?;
    Ok(violations)
}

/// Collects crates and `.rs` files under `root/rel`.
fn walk(
    root: &Path,
    rel: &Path,
    mut krate: Option<usize>,
    mut in_tests: bool,
    crates: &mut Vec<Crate>,
    files: &mut Vec<SourceFile>,
) -> Result<(), TidyError> {
    let dir = root.join(rel);
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|source| TidyError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let manifest = dir.join("Cargo.toml");
    if manifest.is_file() {
        let text = read(&manifest)?;
        let table: toml::Table = text.parse().map_err(|source| TidyError::Manifest {
            path: manifest.clone(),
            source,
        })?;
        if let Some(name) = table
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
        {
            crates.push(Crate {
                dir: rel.to_path_buf(),
                name: name.to_string(),
                manifest: table.clone(),
                manifest_text: text,
            });
            krate = Some(crates.len() - 1);
            in_tests = false;
        }
    } else if rel.file_name().is_some_and(|n| n == "tests") {
        in_tests = true;
    }
    let entries = fs::read_dir(&dir).map_err(|source| TidyError::Read {
        path: dir.clone(),
        source,
    })?;
    let mut entries: Vec<_> = entries
        .map(|e| {
            e.map_err(|source| TidyError::Read {
                path: dir.clone(),
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        let child = rel.join(name);
        // Symbolic links are not followed: a link cannot make a loop or count a file twice.
        let kind = entry.file_type().map_err(|source| TidyError::Read {
            path: path.clone(),
            source,
        })?;
        if kind.is_symlink() {
            continue;
        }
        if kind.is_dir() {
            if name == "target" || name.starts_with('.') || name == "node_modules" {
                continue;
            }
            walk(root, &child, krate, in_tests, crates, files)?;
        } else if name.ends_with(".rs") {
            files.push(SourceFile {
                text: read(&path)?,
                test_file: in_tests || name == "tests.rs" || name.ends_with("_tests.rs"),
                path: child,
                krate,
            });
        }
    }
    Ok(())
}

fn violation(path: &Path, line: usize, message: impl Into<String>) -> Violation {
    Violation {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Every file opens with a `//!` module doc on its first line.
fn module_docs(files: &[SourceFile], out: &mut Vec<Violation>) {
    for file in files {
        if !file.text.starts_with("//!") {
            out.push(violation(
                &file.path,
                1,
                "the file does not open with a `//!` module doc",
            ));
        }
    }
}

/// No unwrap outside test code: an `expect` states its invariant instead.
fn no_unwrap(files: &[SourceFile], out: &mut Vec<Violation>) {
    for file in files {
        for (line, text) in file.code_lines() {
            if text.contains(UNWRAP) {
                out.push(violation(
                    &file.path,
                    line,
                    format!("{UNWRAP} outside tests (use `expect` stating the invariant, or `?`)"),
                ));
            }
        }
    }
}

/// rtnetlink connections only in [`RTNETLINK_ALLOWED`].
fn rtnetlink(files: &[SourceFile], out: &mut Vec<Violation>) {
    for file in files {
        if !file.text.contains("rtnetlink") {
            continue;
        }
        let path = file.path.to_string_lossy().replace('\\', "/");
        if RTNETLINK_ALLOWED.iter().any(|p| path.starts_with(p)) {
            continue;
        }
        for (line, text) in file.code_lines() {
            if text.contains(NEW_CONNECTION) {
                out.push(violation(
                    &file.path,
                    line,
                    "an rtnetlink connection outside the files ARCHITECTURE.md's netlink invariant allows",
                ));
            }
        }
    }
}

/// The crates in [`NO_TOKIO_CRATES`] neither depend on tokio nor name it in their sources.
fn no_tokio(crates: &[Crate], files: &[SourceFile], out: &mut Vec<Violation>) {
    for (index, krate) in crates.iter().enumerate() {
        if !NO_TOKIO_CRATES.contains(&krate.name.as_str()) {
            continue;
        }
        let mut tables: Vec<&toml::Table> = Vec::new();
        if let Some(deps) = krate
            .manifest
            .get("dependencies")
            .and_then(|d| d.as_table())
        {
            tables.push(deps);
        }
        if let Some(targets) = krate.manifest.get("target").and_then(|t| t.as_table()) {
            tables.extend(
                targets
                    .values()
                    .filter_map(|t| t.get("dependencies").and_then(|d| d.as_table())),
            );
        }
        let uses_tokio = tables.iter().any(|deps| {
            deps.iter().any(|(key, value)| {
                key == "tokio" || value.get("package").and_then(|p| p.as_str()) == Some("tokio")
            })
        });
        if uses_tokio {
            let manifest = krate.dir.join("Cargo.toml");
            let line = tokio_line(krate);
            out.push(violation(
                &manifest,
                line,
                format!(
                    "{} depends on tokio; the codec and the model do no I/O",
                    krate.name
                ),
            ));
        }
        let src = krate.dir.join("src");
        for file in files
            .iter()
            .filter(|f| f.krate == Some(index) && f.path.starts_with(&src))
        {
            for (line, text) in file.code_lines() {
                if text.contains(TOKIO_PATH) {
                    out.push(violation(
                        &file.path,
                        line,
                        format!(
                            "{} names tokio; the codec and the model do no I/O",
                            krate.name
                        ),
                    ));
                }
            }
        }
    }
}

/// The manifest line that names tokio (1 when none does: a form this search does not know).
fn tokio_line(krate: &Crate) -> usize {
    krate
        .manifest_text
        .lines()
        .position(|line| {
            let line = line.trim_start();
            line.starts_with("tokio") || line.contains("package = \"tokio\"")
        })
        .map_or(1, |i| i + 1)
}

/// Every file is named in the "## Code map" section: by its path from the repository root
/// or from its crate's `src/`, by a folder holding it (`api/routes/`, `tests/tests/system/`,
/// from the root or from `src/`, not the crate's own folder), or, for a crate root
/// (`lib.rs`, `main.rs`), by the crate's folder (`plugins/bgp/`). A unit-test file
/// (`foo/tests.rs`, `foo_tests.rs`) is named with the module it tests (`foo.rs`).
fn code_map(
    architecture: &str,
    crates: &[Crate],
    files: &[SourceFile],
    out: &mut Vec<Violation>,
) -> Result<(), TidyError> {
    let start = if architecture.starts_with("## Code map") {
        0
    } else {
        architecture
            .find("\n## Code map")
            .ok_or(TidyError::NoCodeMap)?
            + 1
    };
    let section = &architecture[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let names = mentioned_paths(&section[..end]);
    for file in files {
        let krate = file.krate.map(|k| &crates[k]);
        if named(&file.path, krate, &names) {
            continue;
        }
        out.push(violation(
            &file.path,
            1,
            "not named in ARCHITECTURE.md's code map (by its path from the root, its crate or src/, or by a folder with a trailing `/`)",
        ));
    }
    Ok(())
}

/// The path-like words of the code map: runs of `[A-Za-z0-9_./*-]`, with `dir/{a.rs, b/}`
/// expanded to `dir/a.rs` and `dir/b/`, and `dir/*.rs` read as `dir/`.
fn mentioned_paths(text: &str) -> Vec<String> {
    let is_path = |c: char| c.is_ascii_alphanumeric() || "_./*-".contains(c);
    let mut words = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(is_path) {
        let tail = &rest[start..];
        let len = tail.find(|c: char| !is_path(c)).unwrap_or(tail.len());
        let word = &tail[..len];
        let after = &tail[len..];
        if word.ends_with('/') && after.starts_with('{') {
            if let Some(close) = after.find('}') {
                for item in after[1..close].split(',') {
                    words.push(format!("{word}{}", item.trim()));
                }
                rest = &after[close + 1..];
                continue;
            }
        }
        let word = word.strip_suffix("*.rs").unwrap_or(word);
        let word = word.trim_end_matches('.');
        if !word.is_empty() {
            words.push(word.to_string());
        }
        rest = after;
    }
    words
}

fn named(path: &Path, krate: Option<&Crate>, names: &[String]) -> bool {
    if named_itself(path, krate, names) {
        return true;
    }
    // A unit-test file lives with the module it tests: `foo/tests.rs` with `foo.rs` (or
    // `foo/`), `foo_tests.rs` with `foo.rs`.
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let tested = if file_name == "tests.rs" {
        path.parent().map(|dir| dir.with_extension("rs"))
    } else {
        file_name
            .strip_suffix("_tests.rs")
            .map(|module| path.with_file_name(format!("{module}.rs")))
    };
    tested.is_some_and(|module| named_itself(&module, krate, names))
}

fn named_itself(path: &Path, krate: Option<&Crate>, names: &[String]) -> bool {
    let slash = |p: &Path| p.to_string_lossy().replace('\\', "/");
    let has = |candidate: &str| names.iter().any(|n| n == candidate);
    let mut bases = vec![PathBuf::new()];
    if let Some(krate) = krate {
        if let Ok(relative) = path.strip_prefix(&krate.dir) {
            if has(&slash(relative)) {
                return true;
            }
        }
        let src = krate.dir.join("src");
        if path.starts_with(&src) {
            bases.push(src);
        }
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let crate_root = ["lib.rs", "main.rs"].contains(&file_name)
            && path.parent() == Some(krate.dir.join("src").as_path());
        if crate_root && has(&format!("{}/", slash(&krate.dir))) {
            return true;
        }
    }
    for base in &bases {
        let Ok(relative) = path.strip_prefix(base) else {
            continue;
        };
        if has(&slash(relative)) {
            return true;
        }
        let mut folder = relative.parent();
        while let Some(dir) = folder.filter(|d| !d.as_os_str().is_empty()) {
            let is_crate_dir = krate.is_some_and(|k| base.join(dir) == k.dir);
            let is_src = krate.is_some_and(|k| base.join(dir) == k.dir.join("src"));
            if !is_crate_dir && !is_src && has(&format!("{}/", slash(dir))) {
                return true;
            }
            folder = dir.parent();
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tidy repository: a workspace with a model crate, a daemon crate whose netlink module
    /// may open connections, unit and integration tests, and a code map naming everything.
    fn clean_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let files: &[(&str, &str)] = &[
            ("Cargo.toml", "[workspace]\nmembers = [\"ztosd\", \"model\"]\n"),
            (
                "ARCHITECTURE.md",
                "# A\n\n## Code map\n\n### `ztosd/`\n\n- `cli.rs`, `netlink/` and \
                 `ztosd/tests/*.rs`.\n\n### `model/`\n\n`config/{types.rs, parse.rs, tests.rs}`.\n\n\
                 ## Invariants\n\n`ztosd/src/unnamed.rs` is not in the map.\n",
            ),
            (
                "ztosd/Cargo.toml",
                "[package]\nname = \"ztosd\"\n[dependencies]\ntokio = \"1\"\n",
            ),
            ("ztosd/src/lib.rs", "//! Daemon.\npub mod cli;\n"),
            (
                "ztosd/src/cli.rs",
                "//! Cli.\nfn f() -> Option<u8> { Some(1) }\n#[cfg(test)]\nmod tests {\n    \
                 fn t() { super::f().unwrap(); }\n}\n",
            ),
            (
                "ztosd/src/netlink/mod.rs",
                "//! Netlink.\nfn c() { let _ = rtnetlink::new_connection(); }\n",
            ),
            (
                "ztosd/tests/end_to_end.rs",
                "//! End to end.\n#[test]\nfn t() { Some(1).unwrap(); }\n",
            ),
            (
                "model/Cargo.toml",
                "[package]\nname = \"ztos-model\"\n[dependencies]\nserde = \"1\"\n\
                 [dev-dependencies]\ntokio = \"1\"\n",
            ),
            ("model/src/lib.rs", "//! Model.\n// tokio::spawn is not used here\n"),
            ("model/src/config/types.rs", "//! Types.\n"),
            ("model/src/config/parse.rs", "//! Parse.\n"),
            ("model/src/config/tests.rs", "//! Tests.\nfn t() { Some(1).unwrap(); }\n"),
            ("target/debug/build/out.rs", "no docs, not checked\n"),
        ];
        for (path, text) in files {
            plant(&dir, path, text);
        }
        dir
    }

    fn plant(dir: &tempfile::TempDir, path: &str, text: &str) {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }

    fn messages(dir: &tempfile::TempDir) -> Vec<String> {
        check(dir.path())
            .expect("check runs")
            .iter()
            .map(Violation::to_string)
            .collect()
    }

    /// The single violation a planted file causes.
    fn only(dir: &tempfile::TempDir) -> String {
        let found = messages(dir);
        assert_eq!(found.len(), 1, "expected one violation: {found:#?}");
        found[0].clone()
    }

    #[test]
    fn a_clean_tree_passes() {
        assert_eq!(messages(&clean_tree()), Vec::<String>::new());
    }

    #[test]
    fn a_file_without_a_module_doc_fails_at_line_1() {
        let dir = clean_tree();
        plant(&dir, "ztosd/src/cli.rs", "use std::fs;\n");
        let found = only(&dir);
        assert!(found.starts_with("ztosd/src/cli.rs:1: "), "{found}");
        assert!(found.contains("`//!`"), "{found}");
    }

    #[test]
    fn unwrap_outside_tests_fails_at_its_line_and_test_code_may_unwrap() {
        let dir = clean_tree();
        plant(
            &dir,
            "ztosd/src/cli.rs",
            "//! Cli.\n// a comment may say .unwrap()\nfn f() { Some(1).unwrap(); }\n\
             #[cfg(test)]\nmod tests { fn t() { Some(1).unwrap(); } }\n",
        );
        let found = only(&dir);
        assert!(found.starts_with("ztosd/src/cli.rs:3: "), "{found}");
        assert!(found.contains(".unwrap() outside tests"), "{found}");
    }

    #[test]
    fn unwrap_in_a_bench_or_bin_is_not_test_code() {
        let dir = clean_tree();
        plant(
            &dir,
            "ztosd/src/bin/tool.rs",
            "//! Tool.\nfn main() { Some(1).unwrap(); }\n",
        );
        plant(
            &dir,
            "ARCHITECTURE.md",
            "## Code map\n`ztosd/`, `model/`: `cli.rs`, `netlink/`, `bin/`, `ztosd/tests/`, `config/`\n",
        );
        let found = only(&dir);
        assert!(found.starts_with("ztosd/src/bin/tool.rs:2: "), "{found}");
    }

    #[test]
    fn an_rtnetlink_connection_outside_the_allowed_files_fails() {
        let dir = clean_tree();
        plant(
            &dir,
            "ztosd/src/cli.rs",
            "//! Cli.\nuse rtnetlink::new_connection;\n",
        );
        let found = only(&dir);
        assert!(found.starts_with("ztosd/src/cli.rs:2: "), "{found}");
        assert!(found.contains("rtnetlink connection"), "{found}");
        // The daemon's netlink module is on the allow-list; so its clean tree passed.
        assert!(RTNETLINK_ALLOWED.contains(&"ztosd/src/netlink/"));
    }

    #[test]
    fn tokio_in_the_model_fails_in_its_dependencies_and_its_sources() {
        let dir = clean_tree();
        plant(
            &dir,
            "model/Cargo.toml",
            "[package]\nname = \"ztos-model\"\n[dependencies]\nserde = \"1\"\n\
             tokio = { workspace = true }\n",
        );
        plant(
            &dir,
            "model/src/config/parse.rs",
            "//! Parse.\n\nasync fn f() { tokio::task::yield_now().await }\n",
        );
        let found = messages(&dir);
        assert_eq!(
            found,
            [
                "model/Cargo.toml:5: ztos-model depends on tokio; the codec and the model do no I/O",
                "model/src/config/parse.rs:3: ztos-model names tokio; the codec and the model do no I/O",
            ]
        );
    }

    #[test]
    fn a_renamed_tokio_dependency_is_found_too() {
        let dir = clean_tree();
        plant(
            &dir,
            "model/Cargo.toml",
            "[package]\nname = \"ztos-model\"\n\n[dependencies]\nrt = { package = \"tokio\", version = \"1\" }\n",
        );
        assert!(only(&dir).starts_with("model/Cargo.toml:5: "));
    }

    #[test]
    fn a_file_missing_from_the_code_map_fails() {
        let dir = clean_tree();
        plant(&dir, "ztosd/src/unnamed.rs", "//! Not in the map.\n");
        let found = only(&dir);
        assert!(found.starts_with("ztosd/src/unnamed.rs:1: "), "{found}");
        assert!(found.contains("code map"), "{found}");
    }

    #[test]
    fn the_code_map_names_files_by_root_path_src_path_folder_or_crate() {
        let names = mentioned_paths(
            "`a/src/x.rs`; `y.rs` and `api/routes/`. `tests/*.rs`, `evpn/{mod.rs, apply.rs}`.",
        );
        assert_eq!(
            names,
            [
                "a/src/x.rs",
                "y.rs",
                "and",
                "api/routes/",
                "tests/",
                "evpn/mod.rs",
                "evpn/apply.rs"
            ]
        );
        // `src/` and the crate's own folder never cover a whole crate.
        let dir = clean_tree();
        plant(
            &dir,
            "ARCHITECTURE.md",
            "## Code map\n`ztosd/`, `model/`, `src/`, `netlink/`, `config/`, `ztosd/tests/`\n",
        );
        let found = only(&dir);
        assert!(found.starts_with("ztosd/src/cli.rs:1: "), "{found}");
    }

    #[test]
    fn a_unit_test_file_is_named_with_the_module_it_tests() {
        let dir = clean_tree();
        plant(&dir, "ztosd/src/cli/tests.rs", "//! Tests of cli.rs.\n");
        plant(&dir, "ztosd/src/cli_tests.rs", "//! Tests of cli.rs.\n");
        plant(
            &dir,
            "ztosd/src/other_tests.rs",
            "//! Tests of nothing named.\n",
        );
        let found = only(&dir);
        assert!(found.starts_with("ztosd/src/other_tests.rs:1: "), "{found}");
    }

    #[test]
    fn a_map_without_its_section_is_an_error() {
        let dir = clean_tree();
        plant(&dir, "ARCHITECTURE.md", "# No map\n");
        assert!(matches!(check(dir.path()), Err(TidyError::NoCodeMap)));
    }
}
