//! Reading and writing protocol messages on an async byte stream (a unix socket half).
//!
//! This is the only I/O layer of the protocol; both the client library and ztosd's plugin
//! host use it, so framing and the line limit are enforced the same way on both sides.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::{self, DecodeError, LineSplitter};

/// Why the next message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading from the socket failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("connection closed in the middle of a line after {length} bytes")]
    TruncatedLine { length: usize },
}

/// Reads newline-delimited messages from `R`. [`MessageReader::next_line`] and
/// [`MessageReader::next_message`] are cancel-safe: a `select!` that drops them loses no data.
#[derive(Debug)]
pub struct MessageReader<R> {
    reader: R,
    splitter: LineSplitter,
    chunk: Vec<u8>,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// A reader with the protocol's line limit.
    pub fn new(reader: R) -> Self {
        MessageReader::with_splitter(reader, LineSplitter::new())
    }

    /// A reader with a custom splitter (tests use a small line limit).
    pub fn with_splitter(reader: R, splitter: LineSplitter) -> Self {
        MessageReader {
            reader,
            splitter,
            chunk: vec![0; 64 * 1024],
        }
    }

    /// The next line without its newline, or `None` when the peer closed the connection
    /// between two lines.
    pub async fn next_line(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        loop {
            if let Some(line) = self.splitter.next_line()? {
                return Ok(Some(line));
            }
            let read = self.reader.read(&mut self.chunk).await?;
            if read == 0 {
                return match self.splitter.pending() {
                    0 => Ok(None),
                    length => Err(ReadError::TruncatedLine { length }),
                };
            }
            self.splitter.push(&self.chunk[..read]);
        }
    }

    /// The next message, or `None` when the peer closed the connection between two lines.
    pub async fn next_message<M: DeserializeOwned>(&mut self) -> Result<Option<M>, ReadError> {
        match self.next_line().await? {
            Some(line) => Ok(Some(protocol::decode(&line)?)),
            None => Ok(None),
        }
    }
}

/// Writes one message as a line and flushes it.
pub async fn write_message<W, M>(writer: &mut W, message: &M) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    M: Serialize,
{
    writer.write_all(&protocol::encode(message)).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{HostMessage, PROTOCOL_VERSION};

    #[tokio::test]
    async fn reads_messages_then_end_of_stream() {
        let (mut a, b) = tokio::io::duplex(4096);
        let welcome = HostMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
            host_version: "0.1.0".into(),
        };
        let shutdown = HostMessage::Shutdown {
            reason: "host stopping".into(),
        };
        write_message(&mut a, &welcome).await.unwrap();
        write_message(&mut a, &shutdown).await.unwrap();
        drop(a);
        let mut reader = MessageReader::new(b);
        assert_eq!(
            reader.next_message::<HostMessage>().await.unwrap(),
            Some(welcome)
        );
        assert_eq!(
            reader.next_message::<HostMessage>().await.unwrap(),
            Some(shutdown)
        );
        assert_eq!(reader.next_message::<HostMessage>().await.unwrap(), None);
    }

    #[tokio::test]
    async fn truncated_last_line_is_an_error() {
        let (mut a, b) = tokio::io::duplex(4096);
        a.write_all(b"{\"type\":\"wel").await.unwrap();
        drop(a);
        let mut reader = MessageReader::new(b);
        let error = reader.next_line().await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "connection closed in the middle of a line after 12 bytes"
        );
    }
}
