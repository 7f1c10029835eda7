//! The embedded store's audit log in append-only segment files beside the redb file, so that
//! a call which changes no state (an unseal, a lookup, a refusal) costs one `fdatasync` of its
//! group's entries instead of a B-tree commit.
//!
//! Layout: `audit/<first seq, 20 digits>.seg`, each file a 16-byte header (`MNLAUDv1`, the
//! first sequence number, little-endian) and then frames of `len u32 ‖ seq u64 ‖ crc32 u32 ‖
//! row`, `len` the row's length, the CRC over `seq ‖ row`. Files are preallocated in steps of
//! [`ALLOCATION_STEP`] (an append inside the allocation changes no file metadata, so
//! `fdatasync` writes only the data) and a new file is started past [`SEGMENT_BYTES`].
//!
//! The CRC only finds torn and damaged frames: whether a row is genuine is for the log's own
//! MACs and hash chain, checked above the engine like every other row. On opening, the newest
//! file is read up to its last complete frame; what follows (a group whose `fdatasync` never
//! finished, so no caller was answered for it) is cut off, and kept in a `.torn` file beside it
//! if it held anything but zeros. An older file that does not end cleanly is damage.
//!
//! Readers see the rows up to a sequence number taken when they start (see
//! [`AuditSegments::published`]): entries are appended, never changed, so that bound is a
//! snapshot.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::StoreError;

/// The directory of the segment files in the data directory.
pub const AUDIT_DIR: &str = "audit";
/// A segment grows to about this size (64 MiB) before the next one is started.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// Space is allocated ahead in steps of 1 MiB.
pub const ALLOCATION_STEP: u64 = 1 << 20;

const MAGIC: &[u8; 8] = b"MNLAUDv1";
const HEADER_BYTES: u64 = 16;
const FRAME_HEADER_BYTES: usize = 16;
/// A row longer than this is not an audit entry (they are a few hundred bytes): damage.
const MAX_ROW_BYTES: usize = 1 << 20;

fn io(error: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("audit segment: {error}"))
}

/// One segment file and where its frames start.
#[derive(Debug)]
struct Segment {
    /// The sequence number of its first frame.
    first: u64,
    file: Arc<File>,
    /// `None` for a segment in memory.
    path: Option<PathBuf>,
    /// Where each frame starts, in order of sequence numbers.
    offsets: Vec<u32>,
    /// Bytes in use (header and complete frames).
    end: u64,
    /// Bytes allocated (the file's length).
    allocated: u64,
}

impl Segment {
    /// The sequence number after its last frame.
    fn next_seq(&self) -> u64 {
        self.first + self.offsets.len() as u64
    }
}

/// What readers share with the writer: the segments and how far they may read.
#[derive(Debug, Default)]
struct Index {
    segments: Vec<Segment>,
    /// The last entry readers see (0: none).
    published: u64,
    /// The last entry known to be on disk (0: none).
    synced: u64,
}

/// The segment files of one store.
#[derive(Debug)]
pub struct AuditSegments {
    /// `None`: held in memory (`memfd`), for a store in memory.
    dir: Option<PathBuf>,
    index: Mutex<Index>,
    /// Held by the one transaction that may append (taken before redb's write lock).
    appender: Mutex<()>,
    /// Entries were committed with state but their append failed: the next writer appends
    /// them from the store first (see [`AuditSegments::mark_behind`]).
    behind: AtomicBool,
}

/// The lock a reader holds while it fixes its snapshot (see [`AuditSegments::snapshot_lock`]).
pub struct SnapshotLock<'a>(MutexGuard<'a, Index>);

impl SnapshotLock<'_> {
    /// The last entry published: a reader that started its store snapshot under this lock
    /// reads the log up to here, and any later entries from its snapshot.
    pub fn published(&self) -> u64 {
        self.0.published
    }
}

/// The right to append, held for a whole write transaction.
pub struct AppendGuard<'a> {
    _held: MutexGuard<'a, ()>,
}

fn frame_crc(seq: u64, row: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(row);
    hasher.finalize()
}

/// Appends the frame of `row` to `out`.
fn encode_frame(out: &mut Vec<u8>, seq: u64, row: &[u8]) {
    out.extend_from_slice(&(row.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&frame_crc(seq, row).to_le_bytes());
    out.extend_from_slice(row);
}

/// The frame at the start of `bytes`: its sequence number, row and length, or `None` if
/// `bytes` does not start with a complete, intact frame.
fn decode_frame(bytes: &[u8]) -> Option<(u64, &[u8], usize)> {
    let header = bytes.get(..FRAME_HEADER_BYTES)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let seq = u64::from_le_bytes(header[4..12].try_into().ok()?);
    let crc = u32::from_le_bytes(header[12..16].try_into().ok()?);
    if len == 0 || len > MAX_ROW_BYTES {
        return None;
    }
    let row = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len)?;
    (frame_crc(seq, row) == crc).then_some((seq, row, FRAME_HEADER_BYTES + len))
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// Allocates `[from, to)` of `file` ahead of use; a file system without `fallocate` grows the
/// file as it is written instead.
fn allocate(file: &File, from: u64, to: u64) -> Result<(), StoreError> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), from, to - from) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
        Err(error) => Err(io(format!("cannot allocate space: {error}"))),
    }
}

fn sync_data(file: &File) -> Result<(), StoreError> {
    file.sync_data().map_err(io)
}

/// Makes a new file's name durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

impl AuditSegments {
    /// Opens the segments in `data_dir/audit` (creating the directory, 0700), cutting off a
    /// torn tail of the newest; [`StoreError::Corrupt`] when an older one is damaged or the
    /// files do not follow each other.
    pub fn open(data_dir: &Path) -> Result<AuditSegments, StoreError> {
        let dir = data_dir.join(AUDIT_DIR);
        if !dir.exists() {
            fs::DirBuilder::new().mode(0o700).create(&dir).map_err(io)?;
            sync_dir(data_dir)?;
        }
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for item in fs::read_dir(&dir).map_err(io)? {
            let path = item.map_err(io)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(first) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            names.push((first, path));
        }
        names.sort();
        let mut index = Index::default();
        let count = names.len();
        for (n, (first, path)) in names.into_iter().enumerate() {
            let newest = n + 1 == count;
            let segment = read_segment(first, &path, newest)?;
            if let Some(previous) = index.segments.last()
                && previous.next_seq() != first
            {
                return Err(StoreError::Corrupt(format!(
                    "audit segment {} starts at entry {first}, but the one before it ends at entry {}",
                    path.display(),
                    previous.next_seq() - 1
                )));
            }
            match segment {
                Some(segment) => index.segments.push(segment),
                // A newest file whose header never reached the disk: its creation was cut off.
                None => fs::remove_file(&path).map_err(io)?,
            }
        }
        let last = index.segments.last().map_or(0, |s| s.next_seq() - 1);
        index.published = last;
        index.synced = last;
        Ok(AuditSegments {
            dir: Some(dir),
            index: Mutex::new(index),
            appender: Mutex::new(()),
            behind: AtomicBool::new(false),
        })
    }

    /// Segments held in memory (anonymous files), for a store in memory.
    pub fn in_memory() -> AuditSegments {
        AuditSegments {
            dir: None,
            index: Mutex::new(Index::default()),
            appender: Mutex::new(()),
            behind: AtomicBool::new(false),
        }
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the lock under which a reader starts its store snapshot: the writer publishes
    /// entries under it only after their state is committed, so what the reader's snapshot
    /// holds and the entries published agree.
    pub fn snapshot_lock(&self) -> SnapshotLock<'_> {
        SnapshotLock(self.index())
    }

    /// The right to append; held by one write transaction at a time.
    pub fn appender(&self) -> AppendGuard<'_> {
        AppendGuard {
            _held: self.appender.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Notes that entries committed with their state did not reach a segment: the engine
    /// appends them from its store before its next write (and at every open).
    pub fn mark_behind(&self) {
        self.behind.store(true, Ordering::SeqCst);
    }

    /// Whether entries are owed from the store; clears the mark (the caller appends them, or
    /// marks again if it cannot).
    pub fn take_behind(&self) -> bool {
        self.behind.swap(false, Ordering::SeqCst)
    }

    /// The last entry readers see (0: none).
    pub fn published(&self) -> u64 {
        self.index().published
    }

    /// The last entry on disk (0: none).
    pub fn synced(&self) -> u64 {
        self.index().synced
    }

    /// Whether the log holds no entry.
    pub fn is_empty(&self) -> bool {
        self.index().segments.iter().all(|s| s.offsets.is_empty())
    }

    /// Where the frames of entries `from..=to` lie: per segment, its file and byte range.
    fn locate(&self, from: u64, to: u64) -> Vec<(Arc<File>, u64, u64, u64)> {
        let index = self.index();
        let mut ranges = Vec::new();
        for segment in &index.segments {
            let last = segment.next_seq().saturating_sub(1);
            if segment.offsets.is_empty() || last < from || segment.first > to {
                continue;
            }
            let start = from.max(segment.first);
            let stop = to.min(last);
            let begin = u64::from(segment.offsets[(start - segment.first) as usize]);
            let end = segment
                .offsets
                .get((stop - segment.first + 1) as usize)
                .map_or(segment.end, |o| u64::from(*o));
            ranges.push((segment.file.clone(), start, begin, end));
        }
        ranges
    }

    /// Entries `from..=to` (those that exist), read and checked frame by frame.
    pub fn read(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut rows = Vec::new();
        if from > to {
            return Ok(rows);
        }
        for (file, start, begin, end) in self.locate(from, to) {
            let mut bytes = vec![0u8; (end - begin) as usize];
            file.read_exact_at(&mut bytes, begin).map_err(io)?;
            let mut at = 0;
            let mut expected = start;
            while at < bytes.len() {
                let (seq, row, len) = decode_frame(&bytes[at..])
                    .filter(|(seq, _, _)| *seq == expected)
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "audit entry {expected} is damaged in its segment file"
                        ))
                    })?;
                rows.push((seq, row.to_vec()));
                at += len;
                expected += 1;
            }
        }
        Ok(rows)
    }

    /// Appends `rows` (which must follow the last entry, one after another) and, if `sync`,
    /// makes them durable before they are published. Call only with the [`AppendGuard`].
    pub fn append(&self, rows: &[(u64, Vec<u8>)], sync: bool) -> Result<(), StoreError> {
        let Some((first, _)) = rows.first() else {
            return Ok(());
        };
        let (next, current) = {
            let index = self.index();
            let next = index.segments.last().map_or(*first, Segment::next_seq);
            (next, index.segments.last().map(|s| (s.end, s.allocated)))
        };
        for (n, (seq, _)) in rows.iter().enumerate() {
            if *seq != next + n as u64 {
                return Err(StoreError::Corrupt(format!(
                    "audit entry {seq} does not follow entry {}",
                    next + n as u64 - 1
                )));
            }
        }
        let mut bytes = Vec::with_capacity(rows.iter().map(|(_, r)| r.len() + 16).sum());
        let mut starts = Vec::with_capacity(rows.len());
        for (seq, row) in rows {
            starts.push(bytes.len() as u64);
            encode_frame(&mut bytes, *seq, row);
        }
        // A single group larger than a segment still goes into one (it is never split).
        let rotate = current
            .is_none_or(|(end, _)| end > HEADER_BYTES && end + bytes.len() as u64 > SEGMENT_BYTES);
        if rotate {
            self.start_segment(*first, bytes.len() as u64)?;
        }
        let (file, end, allocated) = {
            let index = self.index();
            let segment = index.segments.last().expect("a segment was started");
            (segment.file.clone(), segment.end, segment.allocated)
        };
        let needed = end + bytes.len() as u64;
        let allocated_now = if needed > allocated {
            let to = needed.div_ceil(ALLOCATION_STEP) * ALLOCATION_STEP;
            allocate(&file, allocated, to)?;
            to
        } else {
            allocated
        };
        file.write_all_at(&bytes, end).map_err(io)?;
        if sync {
            sync_data(&file)?;
        }
        let last = rows.last().map_or(0, |(seq, _)| *seq);
        let mut index = self.index();
        let segment = index.segments.last_mut().expect("a segment was started");
        segment
            .offsets
            .extend(starts.iter().map(|start| (end + start) as u32));
        segment.end = needed;
        segment.allocated = allocated_now;
        index.published = last;
        if sync {
            index.synced = last;
        }
        Ok(())
    }

    /// Makes everything appended durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        let (file, published) = {
            let index = self.index();
            (
                index.segments.last().map(|s| s.file.clone()),
                index.published,
            )
        };
        if let Some(file) = file {
            sync_data(&file)?;
        }
        let mut index = self.index();
        index.synced = index.synced.max(published);
        Ok(())
    }

    /// Ensures the current segment has room for `bytes` more (so that a commit whose state is
    /// already durable does not then fail for want of space), or starts none: a new segment
    /// is allocated by its first append.
    pub fn reserve(&self, bytes: u64) -> Result<(), StoreError> {
        // The file system may block (frozen, full, hung): never while readers wait for the
        // index.
        let Some((file, end, allocated)) = self
            .index()
            .segments
            .last()
            .map(|s| (s.file.clone(), s.end, s.allocated))
        else {
            return Ok(());
        };
        let needed = end + bytes;
        if needed > allocated && needed <= SEGMENT_BYTES {
            let to = needed.div_ceil(ALLOCATION_STEP) * ALLOCATION_STEP;
            allocate(&file, allocated, to)?;
            if let Some(segment) = self.index().segments.last_mut() {
                segment.allocated = segment.allocated.max(to);
            }
        }
        Ok(())
    }

    /// Closes the current segment (synced, cut to its frames) and starts one at `first`.
    fn start_segment(&self, first: u64, bytes: u64) -> Result<(), StoreError> {
        if let Some((file, end)) = self
            .index()
            .segments
            .last()
            .map(|s| (s.file.clone(), s.end))
        {
            file.set_len(end).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let allocated = (HEADER_BYTES + bytes).div_ceil(ALLOCATION_STEP) * ALLOCATION_STEP;
        let (file, path) = match &self.dir {
            Some(dir) => {
                let path = dir.join(segment_name(first));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                (file, Some(path))
            }
            None => {
                let fd = rustix::fs::memfd_create("mnl-audit", rustix::fs::MemfdFlags::CLOEXEC)
                    .map_err(io)?;
                (File::from(fd), None)
            }
        };
        let created = (|| {
            allocate(&file, 0, allocated)?;
            let mut header = Vec::with_capacity(HEADER_BYTES as usize);
            header.extend_from_slice(MAGIC);
            header.extend_from_slice(&first.to_le_bytes());
            file.write_all_at(&header, 0).map_err(io)?;
            file.sync_all().map_err(io)?;
            if let Some(dir) = &self.dir {
                sync_dir(dir)?;
            }
            Ok(())
        })();
        if let Err(error) = created {
            if let Some(path) = &path {
                let _ = fs::remove_file(path);
            }
            return Err(error);
        }
        self.index().segments.push(Segment {
            first,
            file: Arc::new(file),
            path,
            offsets: Vec::new(),
            end: HEADER_BYTES,
            allocated,
        });
        Ok(())
    }

    /// Writes `rows` as the whole log of a new store (a restore, a migration), durable when
    /// this returns.
    pub fn create(data_dir: &Path, rows: &[(u64, Vec<u8>)]) -> Result<AuditSegments, StoreError> {
        let segments = AuditSegments::open(data_dir)?;
        if !segments.is_empty() {
            return Err(StoreError::Io(format!(
                "{} holds audit segments already; they are written only into a new place",
                data_dir.join(AUDIT_DIR).display()
            )));
        }
        let guard = segments.appender();
        for chunk in rows.chunks(4096) {
            segments.append(chunk, false)?;
        }
        segments.sync()?;
        drop(guard);
        Ok(segments)
    }

    /// Where the files are (`None` in memory).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The paths of the segment files, oldest first (empty in memory).
    pub fn files(&self) -> Vec<PathBuf> {
        self.index()
            .segments
            .iter()
            .filter_map(|s| s.path.clone())
            .collect()
    }
}

/// Reads one segment file: `None` for a newest file without a complete header (cut off while
/// being created), which the caller removes.
fn read_segment(first: u64, path: &Path, newest: bool) -> Result<Option<Segment>, StoreError> {
    let damaged = |what: &str| {
        StoreError::Corrupt(format!(
            "audit segment {} {what}; restore a backup",
            path.display()
        ))
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    let header_ok = bytes.len() >= HEADER_BYTES as usize
        && &bytes[..8] == MAGIC
        && bytes[8..16] == first.to_le_bytes();
    if !header_ok {
        return if newest && bytes.iter().skip(8).all(|b| *b == 0) {
            Ok(None)
        } else {
            Err(damaged("has no valid header"))
        };
    }
    let mut offsets = Vec::new();
    let mut at = HEADER_BYTES as usize;
    while let Some((seq, _, len)) = decode_frame(&bytes[at..]) {
        if seq != first + offsets.len() as u64 {
            break;
        }
        offsets.push(at as u32);
        at += len;
    }
    let rest = &bytes[at..];
    let torn = rest.iter().any(|b| *b != 0);
    if torn && !newest {
        return Err(damaged(&format!(
            "is damaged after entry {}",
            (first + offsets.len() as u64).saturating_sub(1)
        )));
    }
    if torn {
        // A group whose write was cut off: nobody was answered for it. Keep its bytes.
        // Named by where and when, so a second crash at the same place keeps its own.
        let when = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let kept = path.with_extension(format!("seg.torn-{at}-{when}"));
        // 0600 like the segments: the bytes are entries of the log.
        let mut file_kept = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&kept)
            .map_err(io)?;
        std::io::Write::write_all(&mut file_kept, rest).map_err(io)?;
        file_kept.sync_all().map_err(io)?;
        tracing::warn!(
            segment = %path.display(),
            kept = %kept.display(),
            bytes = rest.len(),
            "the audit log's newest segment ends in an unfinished write: cut off after its last complete entry"
        );
        file.set_len(at as u64).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    // Zeros after the last frame are space allocated ahead, kept for the next appends.
    let allocated = if torn { at as u64 } else { bytes.len() as u64 };
    Ok(Some(Segment {
        first,
        file: Arc::new(file),
        path: Some(path.to_owned()),
        offsets,
        end: at as u64,
        allocated,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn rows(from: u64, to: u64) -> Vec<(u64, Vec<u8>)> {
        (from..=to)
            .map(|seq| (seq, format!("entry {seq}").into_bytes()))
            .collect()
    }

    fn appended(segments: &AuditSegments, rows: &[(u64, Vec<u8>)]) {
        let _guard = segments.appender();
        segments.append(rows, true).expect("append");
    }

    #[test]
    fn entries_read_back_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segments = AuditSegments::open(dir.path()).expect("open");
        appended(&segments, &rows(1, 10));
        appended(&segments, &rows(11, 12));
        drop(segments);
        let segments = AuditSegments::open(dir.path()).expect("reopen");
        assert_eq!(segments.published(), 12);
        assert_eq!(segments.read(1, 12).expect("read"), rows(1, 12));
        assert_eq!(segments.read(5, 7).expect("read"), rows(5, 7));
        assert_eq!(segments.read(12, 40).expect("read"), rows(12, 12));
    }

    #[test]
    fn an_entry_that_does_not_follow_is_refused_and_changes_nothing() {
        let segments = AuditSegments::in_memory();
        appended(&segments, &rows(1, 3));
        let _guard = segments.appender();
        for bad in [
            rows(5, 5),
            rows(3, 3),
            vec![(4, b"a".to_vec()), (6, b"b".to_vec())],
        ] {
            assert!(matches!(
                segments.append(&bad, true),
                Err(StoreError::Corrupt(_))
            ));
        }
        assert_eq!(segments.read(1, 10).expect("read"), rows(1, 3));
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_kept_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segments = AuditSegments::open(dir.path()).expect("open");
        appended(&segments, &rows(1, 5));
        let path = segments.files().pop().expect("a file");
        drop(segments);
        // Half of a sixth frame, as a crash in the middle of its write leaves it.
        let mut frame = Vec::new();
        encode_frame(&mut frame, 6, b"entry 6 that never finished");
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        let end = fs::metadata(&path).expect("meta").len();
        let at = {
            let bytes = fs::read(&path).expect("read");
            bytes.iter().rposition(|b| *b != 0).expect("data") as u64 + 1
        };
        assert!(at < end);
        file.write_all_at(&frame[..frame.len() / 2], at)
            .expect("write");
        drop(file);
        let segments = AuditSegments::open(dir.path()).expect("reopen");
        assert_eq!(segments.read(1, 10).expect("read"), rows(1, 5));
        let kept: Vec<_> = fs::read_dir(dir.path().join(AUDIT_DIR))
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".torn-"))
            .collect();
        assert_eq!(kept.len(), 1, "the torn bytes are kept");
        let mode = kept[0].metadata().expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "kept as privately as the segments");
        // The log goes on after the cut, and reads back whole.
        appended(&segments, &rows(6, 8));
        drop(segments);
        let segments = AuditSegments::open(dir.path()).expect("reopen");
        assert_eq!(segments.read(1, 10).expect("read"), rows(1, 8));
    }

    #[test]
    fn damage_inside_an_older_segment_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segments = AuditSegments::open(dir.path()).expect("open");
        appended(&segments, &rows(1, 3));
        // Force a second segment.
        segments.start_segment(4, 10).expect("second segment");
        appended(&segments, &rows(4, 6));
        let older = segments.files()[0].clone();
        drop(segments);
        let mut bytes = fs::read(&older).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(&older, &bytes).expect("write");
        let refused = AuditSegments::open(dir.path()).expect_err("damaged");
        assert!(
            refused.to_string().contains("is damaged after entry 2"),
            "{refused}"
        );
    }

    #[test]
    fn segments_that_do_not_follow_each_other_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segments = AuditSegments::open(dir.path()).expect("open");
        appended(&segments, &rows(1, 3));
        segments.start_segment(4, 10).expect("second");
        appended(&segments, &rows(4, 6));
        segments.start_segment(7, 10).expect("third");
        appended(&segments, &rows(7, 9));
        let files = segments.files();
        drop(segments);
        // The middle of the log removed with its file.
        fs::remove_file(&files[1]).expect("remove");
        let refused = AuditSegments::open(dir.path()).expect_err("gap");
        assert!(
            refused
                .to_string()
                .contains("starts at entry 7, but the one before it ends at entry 3"),
            "{refused}"
        );
    }

    #[test]
    fn a_damaged_frame_is_refused_when_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segments = AuditSegments::open(dir.path()).expect("open");
        appended(&segments, &rows(1, 3));
        let path = segments.files().pop().expect("file");
        let bytes = fs::read(&path).expect("read");
        let at = bytes
            .windows(7)
            .position(|w| w == b"entry 2")
            .expect("frame 2");
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(b"E", at as u64).expect("write");
        let refused = segments.read(1, 3).expect_err("damaged");
        assert!(
            refused.to_string().contains("audit entry 2 is damaged"),
            "{refused}"
        );
    }

    #[test]
    fn a_full_segment_is_closed_and_the_next_started() {
        let segments = AuditSegments::in_memory();
        let big = vec![7u8; 512 << 10];
        let _guard = segments.appender();
        for seq in 1..=140u64 {
            segments
                .append(&[(seq, big.clone())], false)
                .expect("append");
        }
        segments.sync().expect("sync");
        let count = segments.index().segments.len();
        assert!(count >= 2, "{count} segments");
        let read = segments.read(120, 140).expect("read");
        assert_eq!(read.len(), 21);
        assert!(read.iter().all(|(_, row)| row == &big));
    }
}
