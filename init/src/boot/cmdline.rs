//! The ZTOS keys of the kernel command line: `ztos.slot=a|b` (required) and `ztos.debug`.

use ztos_image::layout::{Slot, CMDLINE_SLOT};

use super::BootError;

/// What the kernel command line tells init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootCommandLine {
    /// The slot the bootloader booted (`ztos.slot=`).
    pub slot: Slot,
    /// `ztos.debug` (or `ztos.debug=1`): init prints every step on the console.
    pub debug: bool,
}

/// Parses `/proc/cmdline`. Words are separated by whitespace; a double-quoted value may hold
/// spaces. When a key repeats, the last one wins, as it does for the kernel's own parameters.
pub fn parse_cmdline(cmdline: &str) -> Result<BootCommandLine, BootError> {
    let mut slot_value: Option<String> = None;
    let mut debug = false;
    for word in split_words(cmdline) {
        let (key, value) = match word.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (word.as_str(), None),
        };
        match (key, value) {
            (CMDLINE_SLOT, value) => slot_value = Some(value.unwrap_or("").to_string()),
            ("ztos.debug", None) => debug = true,
            ("ztos.debug", Some(value)) => debug = !matches!(value, "0" | "no" | "false" | "off"),
            _ => {}
        }
    }
    let Some(value) = slot_value else {
        return Err(BootError::MissingSlot {
            cmdline: cmdline.trim().to_string(),
        });
    };
    let slot = Slot::parse(&value).ok_or(BootError::InvalidSlot { value })?;
    Ok(BootCommandLine { slot, debug })
}

/// Splits the command line the way the kernel does: on whitespace, except inside double
/// quotes, which are removed.
fn split_words(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut has_word = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                has_word = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if has_word {
                    words.push(std::mem::take(&mut current));
                    has_word = false;
                }
            }
            c => {
                current.push(c);
                has_word = true;
            }
        }
    }
    if has_word {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_cmdline_names_slot_and_debug() {
        let parsed =
            parse_cmdline("BOOT_IMAGE=/ztos-a/vmlinuz ro console=ttyS0 ztos.slot=b ztos.debug\n")
                .unwrap();
        assert_eq!(parsed.slot, Slot::B);
        assert!(parsed.debug);
        let parsed = parse_cmdline("ztos.slot=a quiet").unwrap();
        assert_eq!(parsed.slot, Slot::A);
        assert!(!parsed.debug);
    }

    #[test]
    fn boot_cmdline_without_slot_names_the_key() {
        let error = parse_cmdline("console=ttyS0 quiet\n").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("ztos.slot"), "{message}");
        assert!(message.contains("console=ttyS0 quiet"), "{message}");
        // A key that merely starts with the same letters is not the slot key.
        assert!(matches!(
            parse_cmdline("ztos.slotx=a").unwrap_err(),
            BootError::MissingSlot { .. }
        ));
    }

    #[test]
    fn boot_cmdline_with_bad_slot_names_the_value() {
        let message = parse_cmdline("ztos.slot=c").unwrap_err().to_string();
        assert_eq!(
            message,
            "the kernel command line has ztos.slot=\"c\"; expected a or b"
        );
        assert!(matches!(
            parse_cmdline("ztos.slot").unwrap_err(),
            BootError::InvalidSlot { value } if value.is_empty()
        ));
        assert!(matches!(
            parse_cmdline("ztos.slot=").unwrap_err(),
            BootError::InvalidSlot { value } if value.is_empty()
        ));
    }

    #[test]
    fn boot_cmdline_last_key_wins_and_quotes_group_words() {
        let parsed = parse_cmdline("ztos.slot=a ztos.slot=b").unwrap();
        assert_eq!(parsed.slot, Slot::B);
        let parsed = parse_cmdline("dyndbg=\"file x.c +p\" ztos.slot=\"a\" ztos.debug=0").unwrap();
        assert_eq!(parsed.slot, Slot::A);
        assert!(!parsed.debug);
        assert!(parse_cmdline("ztos.debug=1 ztos.slot=a").unwrap().debug);
        // Inside quotes, a slot key is part of another parameter's value.
        assert!(parse_cmdline("x=\"ztos.slot=a\"").is_err());
        assert_eq!(split_words("  a  \"b c\"\td=\"\" "), vec!["a", "b c", "d="]);
    }
}
