//! Every record, read a page at a time for a report, with each row checked against the
//! record view: a report counts only versions the authenticated log names, as a call does.
//!
//! A page is read outside the writer, so a row may be newer than the view (another call's
//! commit, or on a shared store another daemon's, not yet taken in), or older (changed after
//! the page was read). Such rows are noted and settled after the scan, once the log is
//! verified up to the store's head: a row whose version the log now names is counted as read;
//! a row the log changed while the scan ran is read again and must now be the version the log
//! names (a report under load counts each record as it was at some moment of the scan, as any
//! report of a changing store does); any other is tampering (refused DATA_LOSS, and every call
//! stops until the row is repaired).

use crate::audit::records::{Suspect, record_tampered};
use crate::domain::handle::Handle;
use crate::domain::record::Record;
use crate::error::Result;
use crate::service::Locker;
use crate::store::StoreError;

/// Records read per page.
const PAGE: usize = 512;

/// A scan in progress: the rows read whose version the view did not name when read, and how
/// many rows were read against how many the view named at the start.
#[derive(Default)]
pub(super) struct RecordScan {
    unsettled: Vec<(Handle, u64)>,
    read: usize,
    named_at_start: usize,
    /// The log position the view stood at when the scan began.
    at_start: u64,
}

impl RecordScan {
    /// Calls `each` with every record of the store, in handle order, noting the rows the view
    /// does not name as current; [`RecordScan::settle`] must follow before the result is used.
    pub(super) fn read_all(
        &mut self,
        locker: &Locker,
        mut each: impl FnMut(&Record),
    ) -> Result<()> {
        let view = locker.writer.records();
        // Rows are never deleted (a disposed record keeps its tombstone): a scan that reads
        // fewer rows than the view named before its snapshot was taken has had rows taken
        // from under it. (Counted first: the view takes in a commit only after the store has
        // it, so the snapshot holds at least as many.)
        self.named_at_start = view.len();
        self.at_start = view.at();
        let reader = locker.store.reader()?;
        let mut after: Option<Handle> = None;
        loop {
            let page = reader.records_after(after.as_ref(), PAGE)?;
            self.read += page.len();
            for record in &page {
                let tag = view.tagger().tag(record)?;
                if view.tag(&record.handle) != Some(tag) {
                    self.unsettled.push((record.handle.clone(), tag));
                }
                each(record);
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = Some(last.handle.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// Settles the rows noted: `Ok` when every one read is a version the log names now, and
    /// none the log named is missing.
    pub(super) async fn settle(self, locker: &Locker) -> Result<()> {
        if self.read < self.named_at_start {
            let error = StoreError::Tampered {
                table: "record rows".into(),
                key: format!(
                    "{} of the rows the audit log names are missing",
                    self.named_at_start - self.read
                ),
            };
            locker.writer.report_tampering(error.clone()).await;
            return Err(error.into());
        }
        if self.unsettled.is_empty() {
            return Ok(());
        }
        // The view takes in what the log holds up to the store's head (other daemons' commits
        // included), so a row read after a commit it had not yet seen now matches.
        locker.writer.check().await?;
        let view = locker.writer.records();
        // Whether the log moved while the scan ran (then a row may have changed under it).
        let moved = view.at() > self.at_start;
        let tampered = {
            // Not held across an await: a store reader stays on its thread.
            let reader = locker.store.reader()?;
            let mut tampered = None;
            for (handle, read) in self.unsettled {
                if view.tag(&handle) == Some(read) {
                    continue;
                }
                let now = reader
                    .record(&handle)?
                    .map(|record| view.tagger().tag(&record))
                    .transpose()?;
                if moved && now.is_some() && now == view.tag(&handle) {
                    continue;
                }
                view.suspect(Suspect::Record(handle.clone()));
                tampered = Some(record_tampered(&handle));
                break;
            }
            tampered
        };
        if let Some(error) = tampered {
            locker.writer.report_tampering(error.clone()).await;
            return Err(error.into());
        }
        Ok(())
    }
}
