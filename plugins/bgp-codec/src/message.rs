//! The message layer: the 19-byte header (RFC 4271 §4.1), framing a byte stream into messages,
//! and dispatch to the per-type codecs. KEEPALIVE, NOTIFICATION and ROUTE-REFRESH (RFC 2918,
//! RFC 7313) are small enough to live here.

use serde::Serialize;

use super::notification::{code, subcode, Notification};
use super::open::Open;
use super::reader::Reader;
use super::update::{TreatAsWithdraw, Update};
use super::{
    AttributeProblem, Context, DecodeError, EncodeError, Family, HEADER_LEN, MAX_MESSAGE_LEN,
};

const MARKER: [u8; 16] = [0xff; 16];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageType {
    Open = 1,
    Update = 2,
    Notification = 3,
    Keepalive = 4,
    RouteRefresh = 5,
}

/// ROUTE-REFRESH (RFC 2918 §3; the subtype byte is RFC 7313's: 0 normal, 1 BoRR, 2 EoRR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct RouteRefresh {
    pub family: Family,
    pub subtype: u8,
}

/// A BGP message. Not boxed: UPDATEs are the hot path and most messages are UPDATEs.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

/// What decoding one message yields when the session survives it. A session reset is the
/// `Err(DecodeError)` of [`decode_message`] instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Received {
    /// A well-formed message.
    #[serde(rename = "accepted")]
    Message(Message),
    /// RFC 7606 §2 attribute discard: the UPDATE is accepted without the listed attributes.
    #[serde(rename = "attribute_discard")]
    UpdateWithDiscards {
        update: Update,
        discarded: Vec<AttributeProblem>,
    },
    /// RFC 7606 §2 treat-as-withdraw.
    TreatAsWithdraw(TreatAsWithdraw),
}

impl Message {
    fn message_type(&self) -> MessageType {
        match self {
            Message::Open(_) => MessageType::Open,
            Message::Update(_) => MessageType::Update,
            Message::Notification(_) => MessageType::Notification,
            Message::Keepalive => MessageType::Keepalive,
            Message::RouteRefresh(_) => MessageType::RouteRefresh,
        }
    }

    /// The message with its header, appended to `out`. On error `out` is left as it was.
    pub fn encode(&self, ctx: &Context, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.encode_unchecked(ctx, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// The message with its header as a new buffer.
    pub fn to_bytes(&self, ctx: &Context) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(ctx, &mut out)?;
        Ok(out)
    }

    fn encode_unchecked(&self, ctx: &Context, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        write_header(out, self.message_type());
        match self {
            Message::Open(open) => open.encode_body(out)?,
            Message::Update(update) => update.encode_body(ctx, out)?,
            Message::Notification(n) => {
                out.extend_from_slice(&[n.code, n.subcode]);
                out.extend_from_slice(&n.data);
            }
            Message::Keepalive => {}
            Message::RouteRefresh(rr) => {
                out.extend_from_slice(&rr.family.afi.to_be_bytes());
                out.extend_from_slice(&[rr.subtype, rr.family.safi]);
            }
        }
        // RFC 8654 §3: OPEN and KEEPALIVE stay within 4096 bytes even with extended messages.
        let limit = match self {
            Message::Open(_) | Message::Keepalive => MAX_MESSAGE_LEN,
            _ => ctx.max_message_len(),
        };
        patch_length_at(out, start, limit)
    }
}

pub(crate) fn write_header(out: &mut Vec<u8>, message_type: MessageType) {
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&[0, 0, message_type as u8]);
}

/// Fills in the length of the message that starts at offset 0 of `message`.
pub(crate) fn patch_length(message: &mut [u8], ctx: &Context) -> Result<(), EncodeError> {
    patch_length_at(message, 0, ctx.max_message_len())
}

fn patch_length_at(out: &mut [u8], start: usize, limit: usize) -> Result<(), EncodeError> {
    let length = out.len() - start;
    if length > limit {
        return Err(EncodeError::MessageTooLong { length, limit });
    }
    // length <= limit <= 65535.
    out[start + 16..start + 18].copy_from_slice(&(length as u16).to_be_bytes());
    Ok(())
}

/// Framing for a byte stream: the length of the message at the start of `buf`, `Ok(None)` while
/// fewer than 19 bytes have arrived, or the Message Header Error to send (RFC 4271 §6.1).
pub fn message_length(buf: &[u8], ctx: &Context) -> Result<Option<usize>, DecodeError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if header[..16] != MARKER {
        return Err(DecodeError::header(
            subcode::CONNECTION_NOT_SYNCHRONIZED,
            Vec::new(),
            "marker is not all ones".to_string(),
        ));
    }
    let length = usize::from(u16::from_be_bytes([header[16], header[17]]));
    if length < HEADER_LEN || length > ctx.max_message_len() {
        return Err(DecodeError::header(
            subcode::BAD_MESSAGE_LENGTH,
            header[16..18].to_vec(),
            format!(
                "message length {length} is outside {HEADER_LEN}..={}",
                ctx.max_message_len()
            ),
        ));
    }
    Ok(Some(length))
}

/// Decodes exactly one message, header included.
pub fn decode_message(bytes: &[u8], ctx: &Context) -> Result<Received, DecodeError> {
    let length = match message_length(bytes, ctx)? {
        Some(length) => length,
        None => {
            return Err(DecodeError::header(
                subcode::BAD_MESSAGE_LENGTH,
                Vec::new(),
                format!("{} bytes are shorter than the 19-byte header", bytes.len()),
            ))
        }
    };
    let length_field = bytes[16..18].to_vec();
    if length != bytes.len() {
        return Err(DecodeError::header(
            subcode::BAD_MESSAGE_LENGTH,
            length_field,
            format!(
                "length field {length} does not match the {} bytes given",
                bytes.len()
            ),
        ));
    }
    let message_type = bytes[18];
    let body = &bytes[HEADER_LEN..];
    // RFC 4271 §6.1 per-type lengths; RFC 8654 §3 keeps OPEN and KEEPALIVE within 4096.
    let bad_length = |what: &str| {
        Err(DecodeError::header(
            subcode::BAD_MESSAGE_LENGTH,
            length_field.clone(),
            format!("{what} of length {length}"),
        ))
    };
    match message_type {
        1 if !(29..=MAX_MESSAGE_LEN).contains(&length) => bad_length("OPEN"),
        1 => Ok(Received::Message(Message::Open(Open::decode(body)?))),
        2 if length < 23 => bad_length("UPDATE"),
        2 => Update::decode(body, ctx),
        3 if length < 21 => bad_length("NOTIFICATION"),
        3 => {
            let mut r = Reader::new(body);
            let (code, subcode) = (r.u8().unwrap_or(0), r.u8().unwrap_or(0));
            Ok(Received::Message(Message::Notification(Notification::new(
                code,
                subcode,
                r.rest().to_vec(),
            ))))
        }
        4 if length != HEADER_LEN => bad_length("KEEPALIVE"),
        4 => Ok(Received::Message(Message::Keepalive)),
        5 if length != 23 => Err(DecodeError::new(
            // RFC 7313 §5: the data is the whole message.
            code::ROUTE_REFRESH_MESSAGE,
            subcode::INVALID_MESSAGE_LENGTH,
            bytes.to_vec(),
            format!("ROUTE-REFRESH of length {length} is not 23"),
        )),
        5 => {
            let mut r = Reader::new(body);
            let afi = r.u16().unwrap_or(0);
            let subtype = r.u8().unwrap_or(0);
            let safi = r.u8().unwrap_or(0);
            Ok(Received::Message(Message::RouteRefresh(RouteRefresh {
                family: Family::new(afi, safi),
                subtype,
            })))
        }
        other => Err(DecodeError::header(
            subcode::BAD_MESSAGE_TYPE,
            vec![other],
            format!("message type {other} is not 1 to 5"),
        )),
    }
}
