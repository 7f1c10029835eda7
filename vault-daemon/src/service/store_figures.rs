//! Figures of the store for monitoring: records per lifecycle state and the progress of each
//! tenant's rewrap. Read without an audit entry (no caller, nothing released: counts only).

use crate::domain::record::{RecordCounts, RecordStatus};
use crate::domain::rotation::RewrapJob;
use crate::error::Result;
use crate::service::Locker;

const PAGE: usize = 1000;

impl Locker {
    /// Counts every record by state (a scan of the records table: call it rarely).
    pub fn count_records(&self) -> Result<RecordCounts> {
        let reader = self.store.reader()?;
        let mut counts = RecordCounts::default();
        let mut after = None;
        loop {
            let page = reader.records_after(after.as_ref(), PAGE)?;
            for record in &page {
                match record.status {
                    RecordStatus::Active => counts.active += 1,
                    RecordStatus::Suspended(_) => counts.suspended += 1,
                    RecordStatus::Retired(_) => counts.retired += 1,
                    RecordStatus::Disposed(_) => counts.disposed += 1,
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = Some(last.handle.clone()),
                _ => return Ok(counts),
            }
        }
    }

    /// Every tenant's rewrap job (running or finished).
    pub fn rewrap_jobs(&self) -> Result<Vec<RewrapJob>> {
        Ok(self.store.reader()?.jobs()?)
    }
}
