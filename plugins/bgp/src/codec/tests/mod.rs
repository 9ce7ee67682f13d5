//! Byte-vector tests, one file per message kind, plus RFC 7606 outcomes and a no-panic run.
