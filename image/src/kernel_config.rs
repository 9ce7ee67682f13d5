//! Checks a kernel's `.config` against the fragment of options ZTOS needs
//! (`kernel-config/ztos.config`). An option is satisfied when the kernel has it built in (`y`)
//! or as a module (`m`); `# CONFIG_X is not set` and absence both count as missing.

use std::collections::BTreeMap;

/// The fragment shipped in the repository, so a build checks its kernel even without one given.
pub const ZTOS_FRAGMENT: &str = include_str!("../../kernel-config/ztos.config");

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelConfigError {
    #[error("kernel config lacks {}", .missing.join(", "))]
    Missing { missing: Vec<String> },
    #[error("fragment line {line}: {text:?} is not CONFIG_<NAME>=<value>")]
    BadFragmentLine { line: usize, text: String },
}

/// The options of a kernel `.config` that are set (`CONFIG_X=value`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    options: BTreeMap<String, String>,
}

impl KernelConfig {
    pub fn parse(text: &str) -> KernelConfig {
        let options = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("CONFIG_"))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        KernelConfig { options }
    }

    /// `y`, `m`, a string or number, or None when unset.
    pub fn value(&self, option: &str) -> Option<&str> {
        self.options.get(option).map(String::as_str)
    }

    /// Whether the option is usable: built in or a module.
    pub fn has(&self, option: &str) -> bool {
        matches!(self.value(option), Some(v) if v != "n")
    }
}

/// The option names a fragment requires, in file order.
pub fn fragment_options(fragment: &str) -> Result<Vec<String>, KernelConfigError> {
    let mut options = Vec::new();
    for (i, raw) in fragment.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((name, value))
                if name.starts_with("CONFIG_")
                    && name[7..]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !value.is_empty() =>
            {
                options.push(name.to_string())
            }
            _ => {
                return Err(KernelConfigError::BadFragmentLine {
                    line: i + 1,
                    text: raw.to_string(),
                })
            }
        }
    }
    Ok(options)
}

/// Every option of `fragment` that `config` lacks; Ok when none.
pub fn check(config: &KernelConfig, fragment: &str) -> Result<(), KernelConfigError> {
    let missing: Vec<String> = fragment_options(fragment)?
        .into_iter()
        .filter(|option| !config.has(option))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(KernelConfigError::Missing { missing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAGMENT: &str = "# needed\nCONFIG_VXLAN=m\nCONFIG_MACSEC=m\n\nCONFIG_EFI_STUB=y\n";

    #[test]
    fn built_in_and_module_both_satisfy() {
        let config = KernelConfig::parse("CONFIG_VXLAN=y\nCONFIG_MACSEC=m\nCONFIG_EFI_STUB=y\n");
        assert_eq!(check(&config, FRAGMENT), Ok(()));
    }

    #[test]
    fn a_config_without_macsec_fails_naming_it() {
        let config = KernelConfig::parse(
            "CONFIG_VXLAN=m\n# CONFIG_MACSEC is not set\nCONFIG_EFI_STUB=y\nCONFIG_X=\"s\"\n",
        );
        let err = check(&config, FRAGMENT).unwrap_err();
        assert_eq!(err.to_string(), "kernel config lacks CONFIG_MACSEC");
    }

    #[test]
    fn every_missing_option_is_named() {
        let err = check(&KernelConfig::parse("CONFIG_VXLAN=m\n"), FRAGMENT).unwrap_err();
        assert_eq!(
            err,
            KernelConfigError::Missing {
                missing: vec!["CONFIG_MACSEC".into(), "CONFIG_EFI_STUB".into()]
            }
        );
    }

    #[test]
    fn malformed_fragment_lines_are_reported() {
        let err = fragment_options("CONFIG_A=y\nVXLAN\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "fragment line 2: \"VXLAN\" is not CONFIG_<NAME>=<value>"
        );
    }

    #[test]
    fn the_shipped_fragment_parses_and_names_the_options_the_brief_requires() {
        let options = fragment_options(ZTOS_FRAGMENT).unwrap();
        for needed in [
            "CONFIG_MACSEC",
            "CONFIG_WIREGUARD",
            "CONFIG_NET_VRF",
            "CONFIG_EFI_STUB",
        ] {
            assert!(options.iter().any(|o| o == needed), "{needed}");
        }
    }
}
