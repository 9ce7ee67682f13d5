//! No panic on a few thousand mutated messages (deterministic seed), and for every mutant that
//! decodes cleanly: encoding succeeds and decoding that encoding gives the same message.

use super::{four_octet, hex, message, update};
use crate::{decode_message, AddPathFamilies, Context, Family, Received};

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

pub(crate) fn seeds() -> Vec<Vec<u8>> {
    vec![
        super::update::full_ipv4_update(),
        message(4, &[]),
        message(3, &hex("0602 0b 73687574646f776e")),
        message(5, &hex("0001 00 01")),
        hex(super::open::FRR_OPEN_FOR_FUZZ),
        update(
            &[],
            &hex(
                "40 01 01 00 40 02 00
                 80 0e 1c 0019 46 04 0a000001 00 03 11 0001 0a000001 0002 00000000 20 0a000001
                 c0 10 10 0002fde900000064 030c000000000008
                 c0 16 09 00 06 000064 0a000001",
            ),
            &[],
        ),
        update(
            &[],
            &hex(
                "40 01 01 00 40 02 00
                 80 0e 52 0019 46 04 0a000001 00
                 02 28 0001 0a000001 0002 00000000000000000000 00000000 30 525400aabbcc 20 c0a80a05 000064 001388
                 05 22 0001 0a000001 0002 00000000000000000000 00000000 18 c0a81400 00000000 001388",
            ),
            &[],
        ),
        update(
            &hex("10 0a09"),
            &hex("40 01 01 00 40 02 06 02 01 0000fde9 80 0e 1a 0002 01 10 20010db8000000000000000000000001 00 30 20010db80001"),
            &[],
        ),
    ]
}

fn contexts() -> [Context; 4] {
    [
        Context::default(),
        four_octet(),
        Context {
            extended_message: true,
            add_path: AddPathFamilies::NONE
                .with(Family::IPV4_UNICAST)
                .with(Family::L2VPN_EVPN),
            ..four_octet()
        },
        Context::MODERN,
    ]
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..=rng.below(3) {
        let len = bytes.len();
        match rng.below(6) {
            0 if len > 0 => {
                let at = rng.below(len);
                bytes[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                bytes[at] = rng.next() as u8;
            }
            2 => bytes.truncate(rng.below(len + 1)),
            3 => {
                let at = rng.below(len + 1);
                let extra: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, extra);
            }
            4 if len > 19 => {
                // Corrupt a byte past the header, where the message-specific parsers look.
                let at = 19 + rng.below(len - 19);
                bytes[at] = [0x00, 0xff, 0x80, 0x40, 0x10, 0x01][rng.below(6)];
            }
            _ if len > 4 => {
                let from = rng.below(len);
                let to = (from + rng.below(16)).min(len);
                let slice = bytes[from..to].to_vec();
                let at = rng.below(len);
                bytes.splice(at..at, slice);
            }
            _ => {}
        }
    }
    // Mostly keep the header's length right, so mutations reach the message parsers.
    if rng.below(4) != 0 && bytes.len() >= 19 {
        if let Ok(length) = u16::try_from(bytes.len()) {
            bytes[16..18].copy_from_slice(&length.to_be_bytes());
        }
    }
    bytes
}

#[test]
fn mutated_messages_never_panic_and_clean_decodes_round_trip() {
    let seeds = seeds();
    let mut rng = Rng(0x5eed_0b9b_2026);
    let mut clean = 0;
    let mut outcomes = [0usize; 3];
    for _ in 0..6000 {
        let seed = &seeds[rng.below(seeds.len())];
        let bytes = mutate(&mut rng, seed);
        for ctx in contexts() {
            match decode_message(&bytes, &ctx) {
                Ok(Received::Message(m)) => {
                    clean += 1;
                    let encoded = m
                        .to_bytes(&ctx)
                        .unwrap_or_else(|e| panic!("{m:?} decoded but does not encode: {e}"));
                    match decode_message(&encoded, &ctx) {
                        Ok(Received::Message(again)) => assert_eq!(again, m),
                        other => panic!("re-encoded {m:?} decodes to {other:?}"),
                    }
                    outcomes[0] += 1;
                }
                Ok(Received::TreatAsWithdraw(_)) | Ok(Received::UpdateWithDiscards { .. }) => {
                    outcomes[1] += 1
                }
                Err(e) => {
                    assert!(!e.reason.is_empty());
                    assert!(e.notification.data.len() <= 4075);
                    outcomes[2] += 1;
                }
            }
        }
        let _ = crate::decode_hex(&crate::hex::to_hex(&bytes));
    }
    // The mutations exercise all three kinds of outcome.
    assert!(clean > 100, "only {clean} clean decodes");
    assert!(outcomes.iter().all(|&n| n > 100), "outcomes {outcomes:?}");
}
