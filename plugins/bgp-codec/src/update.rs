//! UPDATE messages (RFC 4271 §4.3, RFC 4760 MP_REACH_NLRI / MP_UNREACH_NLRI) with the error
//! handling of RFC 7606, and the packing helpers a speaker uses to send many routes that share
//! one attribute set in as few UPDATEs as fit.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::attributes::{
    expected_flags, flags, type_code, write_attribute, Malformed, PathAttributes, RawAttribute,
    ENCODE_ORDER,
};
use super::message::{write_header, MessageType, Received};
use super::nlri::{decode_list, encode_list, Ipv4Prefix, NlriEntry, NlriList};
use super::notification::subcode;
use super::reader::Reader;
use super::{AttributeProblem, Context, DecodeError, EncodeError, Family, Message, HEADER_LEN};

/// The next hop of MP_REACH_NLRI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum NextHop {
    Ipv4(Ipv4Addr),
    /// RFC 2545 §3: a global address, optionally followed by a link-local one.
    Ipv6 {
        global: Ipv6Addr,
        #[serde(skip_serializing_if = "Option::is_none")]
        link_local: Option<Ipv6Addr>,
    },
    /// The next hop of a family the codec keeps opaque, as its bytes.
    Other(#[serde(serialize_with = "crate::hex::serialize_hex")] Vec<u8>),
}

impl NextHop {
    fn decode(family: Family, bytes: &[u8]) -> Result<NextHop, String> {
        let ipv6 = |bytes: &[u8]| match bytes.len() {
            16 => <[u8; 16]>::try_from(bytes).ok().map(|g| NextHop::Ipv6 {
                global: Ipv6Addr::from(g),
                link_local: None,
            }),
            32 => {
                let global = <[u8; 16]>::try_from(&bytes[..16]).ok()?;
                let link_local = <[u8; 16]>::try_from(&bytes[16..]).ok()?;
                Some(NextHop::Ipv6 {
                    global: Ipv6Addr::from(global),
                    link_local: Some(Ipv6Addr::from(link_local)),
                })
            }
            _ => None,
        };
        let ipv4 = |bytes: &[u8]| {
            <[u8; 4]>::try_from(bytes)
                .ok()
                .map(|a| NextHop::Ipv4(Ipv4Addr::from(a)))
        };
        let next_hop = match family {
            // RFC 8950 allows IPv6 next hops for IPv4 routes.
            Family::IPV4_UNICAST | Family::L2VPN_EVPN => ipv4(bytes).or_else(|| ipv6(bytes)),
            Family::IPV6_UNICAST => ipv6(bytes),
            _ => Some(NextHop::Other(bytes.to_vec())),
        };
        next_hop.ok_or_else(|| {
            format!(
                "MP_REACH_NLRI next hop length {} is not valid for {family}",
                bytes.len()
            )
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            NextHop::Ipv4(a) => out.extend_from_slice(&a.octets()),
            NextHop::Ipv6 { global, link_local } => {
                out.extend_from_slice(&global.octets());
                if let Some(ll) = link_local {
                    out.extend_from_slice(&ll.octets());
                }
            }
            NextHop::Other(bytes) => out.extend_from_slice(bytes),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            NextHop::Ipv4(_) => 4,
            NextHop::Ipv6 { link_local, .. } => 16 + if link_local.is_some() { 16 } else { 0 },
            NextHop::Other(bytes) => bytes.len(),
        }
    }
}

/// MP_REACH_NLRI (RFC 4760 §3): routes of one family and their next hop.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct MpReach {
    pub next_hop: NextHop,
    pub nlri: NlriList,
}

/// MP_UNREACH_NLRI (RFC 4760 §4): withdrawn routes of one family.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct MpUnreach {
    pub withdrawn: NlriList,
}

fn family_at(reader: &mut Reader<'_>) -> Option<Family> {
    Some(Family::new(reader.u16()?, reader.u8()?))
}

impl MpReach {
    fn decode(value: &[u8], ctx: &Context) -> Result<MpReach, String> {
        let mut r = Reader::new(value);
        let (Some(family), Some(nh_len)) = (family_at(&mut r), r.u8()) else {
            return Err(format!(
                "MP_REACH_NLRI of {} bytes is shorter than 5",
                value.len()
            ));
        };
        let nh = r.take(usize::from(nh_len)).ok_or_else(|| {
            format!("MP_REACH_NLRI next hop length {nh_len} overruns the attribute")
        })?;
        let next_hop = NextHop::decode(family, nh)?;
        // The reserved byte (once the SNPA count) is ignored, RFC 4760 §3.
        r.u8()
            .ok_or_else(|| "MP_REACH_NLRI reserved byte missing".to_string())?;
        let nlri = NlriList::decode(family, r.rest(), ctx)?;
        Ok(MpReach { next_hop, nlri })
    }

    fn encode_value(&self, ctx: &Context, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_mp_reach_head(self.nlri.family(), &self.next_hop, out)?;
        self.nlri.encode(ctx, out)
    }
}

fn encode_mp_reach_head(
    family: Family,
    next_hop: &NextHop,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.extend_from_slice(&family.afi.to_be_bytes());
    out.push(family.safi);
    let length = next_hop.encoded_len();
    out.push(u8::try_from(length).map_err(|_| EncodeError::FieldTooLong {
        field: "MP_REACH_NLRI next hop",
        length,
    })?);
    next_hop.encode(out);
    out.push(0);
    Ok(())
}

impl MpUnreach {
    fn decode(value: &[u8], ctx: &Context) -> Result<MpUnreach, String> {
        let mut r = Reader::new(value);
        let family = family_at(&mut r)
            .ok_or_else(|| format!("MP_UNREACH_NLRI of {} bytes is shorter than 3", value.len()))?;
        Ok(MpUnreach {
            withdrawn: NlriList::decode(family, r.rest(), ctx)?,
        })
    }

    fn encode_value(&self, ctx: &Context, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let family = self.withdrawn.family();
        out.extend_from_slice(&family.afi.to_be_bytes());
        out.push(family.safi);
        self.withdrawn.encode(ctx, out)
    }
}

/// An UPDATE message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Update {
    /// Withdrawn IPv4 unicast routes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub withdrawn: Vec<NlriEntry<Ipv4Prefix>>,
    pub attributes: PathAttributes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mp_reach: Option<MpReach>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mp_unreach: Option<MpUnreach>,
    /// Reachable IPv4 unicast routes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nlri: Vec<NlriEntry<Ipv4Prefix>>,
}

/// RFC 7606 §2 treat-as-withdraw: the UPDATE was malformed in a way that leaves the session up,
/// and every route it carried, reachable or not, must be handled as withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreatAsWithdraw {
    /// The routes to withdraw, per family.
    pub withdrawn: Vec<NlriList>,
    /// Every malformed attribute found (including any that would only have been discarded).
    pub problems: Vec<AttributeProblem>,
}

impl Update {
    /// The End-of-RIB marker of `family` (RFC 4724 §2).
    pub fn end_of_rib(family: Family) -> Update {
        if family == Family::IPV4_UNICAST {
            return Update::default();
        }
        Update {
            mp_unreach: Some(MpUnreach {
                withdrawn: NlriList::empty(family),
            }),
            ..Update::default()
        }
    }

    /// The family this UPDATE is the End-of-RIB marker of, if it is one.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() || self.mp_reach.is_some() {
            return None;
        }
        match &self.mp_unreach {
            None if self.attributes == PathAttributes::default() => Some(Family::IPV4_UNICAST),
            Some(un) if un.withdrawn.is_empty() && self.attributes == PathAttributes::default() => {
                Some(un.withdrawn.family())
            }
            _ => None,
        }
    }

    /// Decodes an UPDATE body (after the header) under RFC 7606.
    pub(crate) fn decode(body: &[u8], ctx: &Context) -> Result<Received, DecodeError> {
        let ipv4_add_path = ctx.add_path.contains(Family::IPV4_UNICAST);
        let mut r = Reader::new(body);
        let list_error = |what: &str, len: usize, left: usize| {
            // RFC 7606 §4: when the lengths contradict the message the NLRI cannot be located.
            DecodeError::update(
                subcode::MALFORMED_ATTRIBUTE_LIST,
                Vec::new(),
                format!("{what} {len} exceeds the {left} bytes left"),
            )
        };
        let withdrawn_len = usize::from(
            r.u16()
                .ok_or_else(|| list_error("withdrawn routes length", 2, r.remaining()))?,
        );
        let withdrawn_bytes = r
            .take(withdrawn_len)
            .ok_or_else(|| list_error("withdrawn routes length", withdrawn_len, r.remaining()))?;
        let attributes_len = usize::from(
            r.u16()
                .ok_or_else(|| list_error("total path attribute length", 2, r.remaining()))?,
        );
        let attribute_bytes = r.take(attributes_len).ok_or_else(|| {
            list_error("total path attribute length", attributes_len, r.remaining())
        })?;
        let nlri_bytes = r.rest();
        // RFC 7606 §5.3: NLRI that cannot be parsed is a session reset.
        let network_error = |reason: String| {
            DecodeError::update(subcode::INVALID_NETWORK_FIELD, Vec::new(), reason)
        };
        let withdrawn = decode_list::<Ipv4Prefix>(withdrawn_bytes, ipv4_add_path)
            .map_err(|e| network_error(format!("withdrawn routes: {e}")))?;
        let nlri = decode_list::<Ipv4Prefix>(nlri_bytes, ipv4_add_path)
            .map_err(|e| network_error(format!("NLRI: {e}")))?;

        let mut update = Update {
            withdrawn,
            nlri,
            ..Update::default()
        };
        let mut withdraw_problems = Vec::new();
        let mut discarded = Vec::new();
        let mut seen = [false; 256];
        let mut overrun = None;
        let mut a = Reader::new(attribute_bytes);
        while !a.is_empty() {
            let start = attribute_bytes.len() - a.remaining();
            let (Some(attr_flags), Some(code)) = (a.u8(), a.u8()) else {
                overrun = Some(AttributeProblem {
                    type_code: 0,
                    reason: "attribute header truncated".to_string(),
                });
                break;
            };
            let len = if attr_flags & flags::EXTENDED_LENGTH != 0 {
                a.u16().map(usize::from)
            } else {
                a.u8().map(usize::from)
            };
            let Some(value) = len.and_then(|len| a.take(len)) else {
                overrun = Some(AttributeProblem {
                    type_code: code,
                    reason: match len {
                        None => "attribute length truncated".to_string(),
                        Some(len) => format!(
                            "attribute length {len} exceeds the {} bytes left in the attribute list",
                            a.remaining()
                        ),
                    },
                });
                break;
            };
            let whole = &attribute_bytes[start..attribute_bytes.len() - a.remaining()];
            let problem = |reason: String| AttributeProblem {
                type_code: code,
                reason,
            };
            if seen[usize::from(code)] {
                // RFC 7606 §3 g: MP_REACH_NLRI / MP_UNREACH_NLRI twice is a session reset; any
                // other repeated attribute is discarded after the first.
                if code == type_code::MP_REACH_NLRI || code == type_code::MP_UNREACH_NLRI {
                    return Err(DecodeError::update(
                        subcode::MALFORMED_ATTRIBUTE_LIST,
                        Vec::new(),
                        format!("attribute {code} (MP_REACH/MP_UNREACH_NLRI) appears twice"),
                    ));
                }
                discarded.push(problem("repeated attribute discarded".to_string()));
                continue;
            }
            seen[usize::from(code)] = true;
            let Some(expected) = expected_flags(code) else {
                if attr_flags & flags::OPTIONAL == 0 {
                    // RFC 4271 §6.3, unchanged by RFC 7606.
                    return Err(DecodeError::update(
                        subcode::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                        whole.to_vec(),
                        format!("unrecognized well-known attribute {code}"),
                    ));
                }
                update.attributes.unknown.push(RawAttribute {
                    flags: attr_flags & !flags::EXTENDED_LENGTH,
                    type_code: code,
                    value: value.to_vec(),
                });
                continue;
            };
            let flags_ok = attr_flags & (flags::OPTIONAL | flags::TRANSITIVE) == expected;
            if !flags_ok {
                // RFC 7606 §3 c: Optional/Transitive bits in conflict: treat-as-withdraw.
                withdraw_problems.push(problem(format!(
                    "flags {attr_flags:#04x} conflict with the attribute's definition ({expected:#04x})"
                )));
            }
            match code {
                // RFC 7606 §7.11 and §5.3: MP attributes that cannot be parsed leave no way to
                // find the routes, so they are a session reset. Parsed even with bad flags, so
                // treat-as-withdraw knows what to withdraw.
                type_code::MP_REACH_NLRI => {
                    update.mp_reach = Some(MpReach::decode(value, ctx).map_err(|reason| {
                        DecodeError::update(
                            subcode::OPTIONAL_ATTRIBUTE_ERROR,
                            whole.to_vec(),
                            reason,
                        )
                    })?);
                }
                type_code::MP_UNREACH_NLRI => {
                    update.mp_unreach = Some(MpUnreach::decode(value, ctx).map_err(|reason| {
                        DecodeError::update(
                            subcode::OPTIONAL_ATTRIBUTE_ERROR,
                            whole.to_vec(),
                            reason,
                        )
                    })?);
                }
                _ if !flags_ok => {}
                _ => match update.attributes.decode_known(code, value, ctx) {
                    Ok(_) => {}
                    Err(Malformed::TreatAsWithdraw(reason)) => {
                        withdraw_problems.push(problem(reason))
                    }
                    Err(Malformed::Discard(reason)) => discarded.push(problem(reason)),
                },
            }
        }

        if let Some(problem) = overrun {
            // RFC 7606 §4: an attribute overrunning the list is treat-as-withdraw, which needs
            // the routes (§5.2). The IPv4 fields are always located; MP attributes only if they
            // came before the overrun (RFC 7606 §5.1 asks senders to put them first). With no
            // route located at all, the UPDATE cannot be handled and the session is reset.
            let located = !update.withdrawn.is_empty()
                || !update.nlri.is_empty()
                || update.mp_reach.is_some()
                || update.mp_unreach.is_some();
            if !located {
                return Err(DecodeError::update(
                    subcode::MALFORMED_ATTRIBUTE_LIST,
                    Vec::new(),
                    format!("{problem}, and no route could be located to withdraw"),
                ));
            }
            withdraw_problems.push(problem);
        } else {
            // RFC 7606 §3 d: a missing well-known mandatory attribute is treat-as-withdraw.
            // LOCAL_PREF on iBGP is the speaker's check: the codec does not know the session type.
            let reachable = !update.nlri.is_empty()
                || update.mp_reach.as_ref().is_some_and(|m| !m.nlri.is_empty());
            let attrs = &update.attributes;
            let missing = |code: u8, name: &str| AttributeProblem {
                type_code: code,
                reason: format!("well-known mandatory attribute {name} missing"),
            };
            if reachable && attrs.origin.is_none() && !seen[usize::from(type_code::ORIGIN)] {
                withdraw_problems.push(missing(type_code::ORIGIN, "ORIGIN"));
            }
            if reachable && attrs.as_path.is_none() && !seen[usize::from(type_code::AS_PATH)] {
                withdraw_problems.push(missing(type_code::AS_PATH, "AS_PATH"));
            }
            if !update.nlri.is_empty()
                && attrs.next_hop.is_none()
                && !seen[usize::from(type_code::NEXT_HOP)]
            {
                withdraw_problems.push(missing(type_code::NEXT_HOP, "NEXT_HOP"));
            }
        }

        if !withdraw_problems.is_empty() {
            withdraw_problems.extend(discarded);
            return Ok(Received::TreatAsWithdraw(
                update.into_treat_as_withdraw(withdraw_problems),
            ));
        }
        if !discarded.is_empty() {
            return Ok(Received::UpdateWithDiscards { update, discarded });
        }
        Ok(Received::Message(Message::Update(update)))
    }

    fn into_treat_as_withdraw(self, problems: Vec<AttributeProblem>) -> TreatAsWithdraw {
        let mut withdrawn = Vec::new();
        let mut ipv4 = self.withdrawn;
        ipv4.extend(self.nlri);
        if !ipv4.is_empty() {
            withdrawn.push(NlriList::Ipv4(ipv4));
        }
        if let Some(un) = self.mp_unreach {
            withdrawn.push(un.withdrawn);
        }
        if let Some(reach) = self.mp_reach {
            withdrawn.push(reach.nlri);
        }
        TreatAsWithdraw {
            withdrawn,
            problems,
        }
    }

    /// Encodes the UPDATE body (after the header).
    pub(crate) fn encode_body(&self, ctx: &Context, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let ipv4_add_path = ctx.add_path.contains(Family::IPV4_UNICAST);
        let withdrawn_at = out.len();
        out.extend_from_slice(&[0, 0]);
        encode_list(&self.withdrawn, ipv4_add_path, out)?;
        patch_u16(out, withdrawn_at, ctx)?;
        let attributes_at = out.len();
        out.extend_from_slice(&[0, 0]);
        encode_attributes(&self.attributes, ctx, out, &|code, ctx, out| match code {
            type_code::MP_REACH_NLRI => match &self.mp_reach {
                Some(reach) => {
                    write_attribute(out, flags::OPTIONAL, code, &|o| reach.encode_value(ctx, o))
                }
                None => Ok(()),
            },
            type_code::MP_UNREACH_NLRI => match &self.mp_unreach {
                Some(un) => {
                    write_attribute(out, flags::OPTIONAL, code, &|o| un.encode_value(ctx, o))
                }
                None => Ok(()),
            },
            _ => Ok(()),
        })?;
        patch_u16(out, attributes_at, ctx)?;
        encode_list(&self.nlri, ipv4_add_path, out)
    }
}

type MpWriter<'a> = dyn Fn(u8, &Context, &mut Vec<u8>) -> Result<(), EncodeError> + 'a;

/// Writes the attributes in ascending type code, unknown ones merged in, MP attributes by `mp`.
fn encode_attributes(
    attributes: &PathAttributes,
    ctx: &Context,
    out: &mut Vec<u8>,
    mp: &MpWriter<'_>,
) -> Result<(), EncodeError> {
    encode_attributes_in(attributes, ctx, out, mp, 0..=u8::MAX)
}

/// [`encode_attributes`] for the type codes in `codes` only.
fn encode_attributes_in(
    attributes: &PathAttributes,
    ctx: &Context,
    out: &mut Vec<u8>,
    mp: &MpWriter<'_>,
    codes: std::ops::RangeInclusive<u8>,
) -> Result<(), EncodeError> {
    let mut unknown = attributes
        .unknown
        .iter()
        .filter(|raw| codes.contains(&raw.type_code))
        .peekable();
    let write_raw = |raw: &RawAttribute, out: &mut Vec<u8>| {
        write_attribute(
            out,
            raw.flags & !flags::EXTENDED_LENGTH,
            raw.type_code,
            &|o| {
                o.extend_from_slice(&raw.value);
                Ok(())
            },
        )
    };
    for code in ENCODE_ORDER.into_iter().filter(|code| codes.contains(code)) {
        while let Some(raw) = unknown.next_if(|raw| raw.type_code < code) {
            write_raw(raw, out)?;
        }
        if code == type_code::MP_REACH_NLRI || code == type_code::MP_UNREACH_NLRI {
            mp(code, ctx, out)?;
        } else {
            attributes.encode_known(code, ctx, out)?;
        }
    }
    for raw in unknown {
        write_raw(raw, out)?;
    }
    Ok(())
}

/// Fills the two-byte length placeholder at `at` with the bytes written after it.
fn patch_u16(out: &mut [u8], at: usize, ctx: &Context) -> Result<(), EncodeError> {
    let length = out.len() - at - 2;
    let value = u16::try_from(length).map_err(|_| EncodeError::MessageTooLong {
        length: length + HEADER_LEN,
        limit: ctx.max_message_len(),
    })?;
    out[at..at + 2].copy_from_slice(&value.to_be_bytes());
    Ok(())
}

/// Encodes `list` one route at a time into one buffer, returning where each route ends, so the
/// packers can cut between routes. A family kept opaque is one indivisible piece.
fn encode_pieces(list: &NlriList, ctx: &Context) -> Result<(Vec<u8>, Vec<usize>), EncodeError> {
    let add_path = ctx.add_path.contains(list.family());
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    fn each<T: super::nlri::WireNlri>(
        entries: &[NlriEntry<T>],
        add_path: bool,
        bytes: &mut Vec<u8>,
        ends: &mut Vec<usize>,
    ) -> Result<(), EncodeError> {
        for entry in entries {
            super::nlri::encode_entry(entry, add_path, bytes)?;
            ends.push(bytes.len());
        }
        Ok(())
    }
    match list {
        NlriList::Ipv4(v) => each(v, add_path, &mut bytes, &mut ends)?,
        NlriList::Ipv6(v) => each(v, add_path, &mut bytes, &mut ends)?,
        NlriList::Evpn(v) => each(v, add_path, &mut bytes, &mut ends)?,
        NlriList::Other { bytes: raw, .. } => {
            bytes.extend_from_slice(raw);
            ends.push(bytes.len());
        }
    }
    Ok((bytes, ends))
}

/// Groups consecutive pieces so each group is at most `budget` bytes.
fn groups(
    ends: &[usize],
    budget: usize,
    family: Family,
    limit: usize,
) -> Result<Vec<(usize, usize)>, EncodeError> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut last_end = 0;
    for &end in ends {
        if end - last_end > budget {
            return Err(EncodeError::RouteDoesNotFit { family, limit });
        }
        if end - start > budget {
            out.push((start, last_end));
            start = last_end;
        }
        last_end = end;
    }
    if last_end > start {
        out.push((start, last_end));
    }
    Ok(out)
}

/// Encodes the routes in `nlri`, all with `attributes`, into as few UPDATE messages as fit the
/// context's size limit, each a complete message with its header. IPv4 unicast routes go in
/// the NLRI field (with `attributes.next_hop`) unless `mp_next_hop` is given; every other family
/// goes in MP_REACH_NLRI with `mp_next_hop`. The attributes are encoded once.
pub fn pack_announcements(
    ctx: &Context,
    attributes: &PathAttributes,
    mp_next_hop: Option<&NextHop>,
    nlri: &NlriList,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let family = nlri.family();
    let limit = ctx.max_message_len();
    let (pieces, ends) = encode_pieces(nlri, ctx)?;
    let no_mp: &MpWriter<'_> = &|_, _, _| Ok(());
    let mut messages = Vec::new();
    match (nlri, mp_next_hop) {
        (NlriList::Ipv4(_), None) => {
            let mut attrs = Vec::new();
            encode_attributes(attributes, ctx, &mut attrs, no_mp)?;
            let fixed = HEADER_LEN + 4 + attrs.len();
            let budget = limit
                .checked_sub(fixed)
                .ok_or(EncodeError::RouteDoesNotFit { family, limit })?;
            for (start, end) in groups(&ends, budget, family, limit)? {
                let mut m = Vec::with_capacity(fixed + end - start);
                write_header(&mut m, MessageType::Update);
                m.extend_from_slice(&[0, 0]);
                m.extend_from_slice(&u16::try_from(attrs.len()).unwrap_or(u16::MAX).to_be_bytes());
                m.extend_from_slice(&attrs);
                m.extend_from_slice(&pieces[start..end]);
                super::message::patch_length(&mut m, ctx)?;
                messages.push(m);
            }
        }
        (_, None) => return Err(EncodeError::MissingNextHop { family }),
        (_, Some(next_hop)) => {
            let mut head = Vec::new();
            encode_mp_reach_head(family, next_hop, &mut head)?;
            // Attributes below MP_REACH_NLRI's code go before it, the rest after.
            let mut low = Vec::new();
            let mut high = Vec::new();
            encode_attributes_in(
                attributes,
                ctx,
                &mut low,
                no_mp,
                0..=type_code::MP_REACH_NLRI - 1,
            )?;
            encode_attributes_in(
                attributes,
                ctx,
                &mut high,
                no_mp,
                type_code::MP_UNREACH_NLRI + 1..=u8::MAX,
            )?;
            // Four bytes of MP_REACH_NLRI header: the extended length form, the larger one.
            let fixed = HEADER_LEN + 4 + low.len() + 4 + head.len() + high.len();
            let budget = limit
                .checked_sub(fixed)
                .ok_or(EncodeError::RouteDoesNotFit { family, limit })?;
            for (start, end) in groups(&ends, budget, family, limit)? {
                let mut m = Vec::with_capacity(fixed + end - start);
                write_header(&mut m, MessageType::Update);
                m.extend_from_slice(&[0, 0, 0, 0]);
                m.extend_from_slice(&low);
                write_attribute(&mut m, flags::OPTIONAL, type_code::MP_REACH_NLRI, &|o| {
                    o.extend_from_slice(&head);
                    o.extend_from_slice(&pieces[start..end]);
                    Ok(())
                })?;
                m.extend_from_slice(&high);
                patch_u16(&mut m, HEADER_LEN + 2, ctx)?;
                super::message::patch_length(&mut m, ctx)?;
                messages.push(m);
            }
        }
    }
    Ok(messages)
}

/// Encodes withdrawals of `nlri` into as few UPDATE messages as fit: IPv4 unicast in the
/// withdrawn routes field, other families in MP_UNREACH_NLRI.
pub fn pack_withdrawals(ctx: &Context, nlri: &NlriList) -> Result<Vec<Vec<u8>>, EncodeError> {
    let family = nlri.family();
    let limit = ctx.max_message_len();
    let (pieces, ends) = encode_pieces(nlri, ctx)?;
    let mut messages = Vec::new();
    let ipv4 = matches!(nlri, NlriList::Ipv4(_));
    // Header, two length fields, and for MP: a four-byte attribute header plus AFI/SAFI.
    let fixed = HEADER_LEN + 4 + if ipv4 { 0 } else { 4 + 3 };
    let budget = limit - fixed;
    for (start, end) in groups(&ends, budget, family, limit)? {
        let mut m = Vec::with_capacity(fixed + end - start);
        write_header(&mut m, MessageType::Update);
        if ipv4 {
            m.extend_from_slice(&u16::try_from(end - start).unwrap_or(u16::MAX).to_be_bytes());
            m.extend_from_slice(&pieces[start..end]);
            m.extend_from_slice(&[0, 0]);
        } else {
            m.extend_from_slice(&[0, 0, 0, 0]);
            write_attribute(&mut m, flags::OPTIONAL, type_code::MP_UNREACH_NLRI, &|o| {
                o.extend_from_slice(&family.afi.to_be_bytes());
                o.push(family.safi);
                o.extend_from_slice(&pieces[start..end]);
                Ok(())
            })?;
            patch_u16(&mut m, HEADER_LEN + 2, ctx)?;
        }
        super::message::patch_length(&mut m, ctx)?;
        messages.push(m);
    }
    Ok(messages)
}
