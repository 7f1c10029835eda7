//! The snapshot format of an online backup: every row of every table, as stored, read from one
//! read transaction, so the copy is consistent while the daemon serves. Rows keep their bytes,
//! so their MACs, the record associated data and the audit chain come along unchanged and a
//! restore can verify them all before it writes anything in place.
//!
//! Layout: `MNL-SNAPSHOT-v1\n`, then frames `kind (1) ‖ len (4, big-endian) ‖ payload`:
//! one header frame (kind 1, JSON [`SnapshotHeader`]), row frames (kind 2: table, key, value,
//! each length-prefixed), and a trailer frame (kind 3: SHA-256 of every byte before it). The
//! trailer catches a cut or damaged file; what the rows say is checked by the restore's
//! verification (the trailer is no signature).

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

use crate::store::catalogue;
use crate::store::rows::RowsRead;
use crate::store::typed::Typed;
use crate::store::{SnapshotSummary, StoreError};

const MAGIC: &[u8] = b"MNL-SNAPSHOT-v1\n";
const HEADER: u8 = 1;
const ROW: u8 = 2;
const TRAILER: u8 = 3;
/// A frame longer than this is refused on reading (no row is anywhere near).
const MAX_FRAME: usize = 64 << 20;

/// What a snapshot says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// Store schema version.
    pub schema: u32,
    /// Last audit entry in the snapshot.
    pub head_seq: u64,
    /// Newest checkpoint in the snapshot (number, entry), if any.
    pub checkpoint: Option<(u64, u64)>,
    /// When it was taken, ms since the Unix epoch.
    pub taken_at_ms: i64,
}

impl SnapshotHeader {
    /// The header of a snapshot read through `reader`: this build's schema, the last audit
    /// entry and the newest checkpoint it sees.
    pub fn of(
        reader: &dyn crate::store::StoreRead,
        taken_at_ms: i64,
    ) -> Result<SnapshotHeader, StoreError> {
        Ok(SnapshotHeader {
            schema: crate::store::SCHEMA_VERSION,
            head_seq: reader.audit_last()?.map_or(0, |(seq, _)| seq),
            checkpoint: reader
                .last_checkpoint()?
                .map(|checkpoint| (checkpoint.number, checkpoint.seq)),
            taken_at_ms,
        })
    }
}

/// Rows read per statement while a snapshot pages through a table.
const PAGE: usize = 1000;

/// Writes a snapshot of the state `reader` sees to `sink`: the header, then every row of every
/// table in the catalogue's order, a page at a time (a large table never sits in memory
/// whole), then the trailer. The same for every engine.
pub fn write<R: RowsRead>(
    reader: &Typed<'_, R>,
    sink: &mut dyn FnMut(&[u8]) -> bool,
    taken_at_ms: i64,
) -> Result<SnapshotSummary, StoreError> {
    let header = SnapshotHeader::of(reader, taken_at_ms)?;
    let mut writer = SnapshotWriter::start(sink, &header)?;
    for table in catalogue::SNAPSHOT_ORDER {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = reader
                .rows()
                .scan(table, after.as_deref(), Some(PAGE), false)?;
            let Some((last, _)) = page.last() else { break };
            let last = last.clone();
            for (key, value) in &page {
                if catalogue::is_engine_row(table, key) {
                    continue;
                }
                writer.row(table.name, key, value)?;
            }
            after = Some(last);
        }
    }
    let (rows, bytes, digest) = writer.finish()?;
    Ok(SnapshotSummary {
        header,
        rows,
        bytes,
        digest,
    })
}

/// One stored row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    /// Table name.
    pub table: String,
    /// The row's key, as the store encodes it.
    pub key: Vec<u8>,
    /// The row's value, as stored.
    pub value: Vec<u8>,
}

/// Writes the snapshot format to a byte sink (`false` from the sink: the reader went away).
pub struct SnapshotWriter<'a> {
    sink: &'a mut dyn FnMut(&[u8]) -> bool,
    digest: Context,
    rows: u64,
    bytes: u64,
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

impl<'a> SnapshotWriter<'a> {
    /// Starts a snapshot with its header.
    pub fn start(
        sink: &'a mut dyn FnMut(&[u8]) -> bool,
        header: &SnapshotHeader,
    ) -> Result<SnapshotWriter<'a>, StoreError> {
        let mut writer = SnapshotWriter {
            sink,
            digest: Context::new(&SHA256),
            rows: 0,
            bytes: 0,
        };
        writer.emit(MAGIC)?;
        let json = serde_json::to_vec(header).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        writer.emit(&frame(HEADER, &json))?;
        Ok(writer)
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.digest.update(bytes);
        self.bytes += bytes.len() as u64;
        if (self.sink)(bytes) {
            Ok(())
        } else {
            Err(StoreError::Io("the backup's reader went away".into()))
        }
    }

    /// Adds a row.
    pub fn row(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut payload = Vec::with_capacity(12 + table.len() + key.len() + value.len());
        push_field(&mut payload, table.as_bytes());
        push_field(&mut payload, key);
        push_field(&mut payload, value);
        self.rows += 1;
        self.emit(&frame(ROW, &payload))
    }

    /// Ends the snapshot with its trailer; returns (rows, bytes, SHA-256 of the whole file).
    pub fn finish(mut self) -> Result<(u64, u64, [u8; 32]), StoreError> {
        let body_digest = self.digest.clone().finish();
        self.emit(&frame(TRAILER, body_digest.as_ref()))?;
        let mut whole = [0u8; 32];
        whole.copy_from_slice(self.digest.finish().as_ref());
        Ok((self.rows, self.bytes, whole))
    }
}

fn bad(what: &str) -> StoreError {
    StoreError::Corrupt(format!("snapshot: {what}"))
}

/// Parses a whole snapshot: its header and rows, after checking the trailer. A cut, damaged or
/// foreign file is refused.
pub fn read(bytes: &[u8]) -> Result<(SnapshotHeader, Vec<SnapshotRow>), StoreError> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("not a locker snapshot (magic missing)"))?;
    let mut at = 0usize;
    let mut header = None;
    let mut rows = Vec::new();
    loop {
        let start = MAGIC.len() + at;
        let (&kind, after) = rest[at..]
            .split_first()
            .ok_or_else(|| bad("cut short (no trailer)"))?;
        let len_bytes: [u8; 4] = after
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("cut short inside a frame"))?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        if len > MAX_FRAME {
            return Err(bad("a frame is too long"));
        }
        let payload = after
            .get(4..4 + len)
            .ok_or_else(|| bad("cut short inside a frame"))?;
        at += 5 + len;
        match kind {
            HEADER => {
                header = Some(
                    serde_json::from_slice::<SnapshotHeader>(payload)
                        .map_err(|e| bad(&format!("header does not parse: {e}")))?,
                )
            }
            ROW => rows.push(parse_row(payload)?),
            TRAILER => {
                let digest = ring::digest::digest(&SHA256, &bytes[..start]);
                if digest.as_ref() != payload {
                    return Err(bad("its digest does not match: the file is damaged"));
                }
                if at != rest.len() {
                    return Err(bad("bytes after the trailer"));
                }
                let header = header.ok_or_else(|| bad("no header"))?;
                return Ok((header, rows));
            }
            other => return Err(bad(&format!("unknown frame kind {other}"))),
        }
    }
}

fn parse_row(payload: &[u8]) -> Result<SnapshotRow, StoreError> {
    let mut fields = Vec::with_capacity(3);
    let mut rest = payload;
    for _ in 0..3 {
        let len_bytes: [u8; 4] = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("a row is cut short"))?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let field = rest
            .get(4..4 + len)
            .ok_or_else(|| bad("a row is cut short"))?;
        fields.push(field.to_vec());
        rest = &rest[4 + len..];
    }
    if !rest.is_empty() {
        return Err(bad("a row has trailing bytes"));
    }
    let value = fields.pop().unwrap_or_default();
    let key = fields.pop().unwrap_or_default();
    let table = String::from_utf8(fields.pop().unwrap_or_default())
        .map_err(|_| bad("a table name is not text"))?;
    Ok(SnapshotRow { table, key, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        let mut sink = |b: &[u8]| {
            out.extend_from_slice(b);
            true
        };
        let header = SnapshotHeader {
            schema: 3,
            head_seq: 7,
            checkpoint: Some((1, 5)),
            taken_at_ms: 1,
        };
        let mut writer = SnapshotWriter::start(&mut sink, &header).expect("start");
        writer.row("tenants", b"acme", b"\x02value").expect("row");
        writer
            .row("audit", &7u64.to_be_bytes(), b"entry")
            .expect("row");
        writer.finish().expect("finish");
        out
    }

    #[test]
    fn round_trip_and_damage() {
        let bytes = sample();
        let (header, rows) = read(&bytes).expect("read");
        assert_eq!(header.head_seq, 7);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].table, "tenants");
        assert_eq!(rows[1].key, 7u64.to_be_bytes());
        for at in [MAGIC.len() + 3, bytes.len() / 2, bytes.len() - 40] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert!(read(&damaged).is_err(), "byte {at}");
        }
        assert!(read(&bytes[..bytes.len() - 1]).is_err(), "cut");
        assert!(read(b"something else").is_err());
    }
}
