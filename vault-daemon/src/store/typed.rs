//! The typed store, written once over any engine's rows ([`RowsRead`], [`RowsWrite`]): which
//! table holds what under which key, the codecs, the MAC of every authority row (sealed on
//! write, checked on read, bound to table and key), and the authority digest.

use vault_audit::certificate::DeletionCertificate;
use vault_audit::checkpoint::Checkpoint;

use crate::domain::approval::ChangeRequest;
use crate::domain::audit_key::AuditKeyRecord;
use crate::domain::correction::Correction;
use crate::domain::handle::Handle;
use crate::domain::lifecycle::{DisposalQueueEntry, EpochKey};
use crate::domain::operator::{Operator, Tenant};
use crate::domain::record::Record;
use crate::domain::rotation::{DestructionRequest, RewrapJob};
use crate::domain::tenant_info::TenantInfo;
use crate::domain::token::TokenRecord;
use crate::store::catalogue::{self as tables, Table};
use crate::store::codec::{
    decode, decode_sealed, digest_row, disposal_key, encode, encode_sealed, epoch_key_id, index_key,
};
use crate::store::rows::{RowsRead, RowsWrite};
use crate::store::sealing::RowSealer;
use crate::store::{AuthorityState, CheckpointState, StoreError, StoreRead, StoreWrite};

/// The authority state's key in [`tables::STATE`].
const STATE_KEY: &str = "authority";
/// The checkpoint state's key in [`tables::STATE`].
const CHECKPOINT_STATE_KEY: &str = "checkpoint";

/// An engine's transaction, typed: the store's reads (and, over [`RowsWrite`], its writes).
pub struct Typed<'s, R> {
    rows: R,
    sealer: &'s RowSealer,
    authority_changed: bool,
}

impl<'s, R> Typed<'s, R> {
    /// Types `rows`, authenticating authority rows with `sealer`.
    pub fn new(rows: R, sealer: &'s RowSealer) -> Typed<'s, R> {
        Typed {
            rows,
            sealer,
            authority_changed: false,
        }
    }

    /// The engine's transaction.
    pub fn rows(&self) -> &R {
        &self.rows
    }
}

/// An integer key read back (audit entries, checkpoints).
fn seq_of(table: Table, key: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("a key of {} is not a number", table.name)))
}

impl<R: RowsRead> Typed<'_, R> {
    /// A row that authenticates itself otherwise (records by their associated data,
    /// checkpoints by their signatures).
    fn get_decoded<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        key: &[u8],
        what: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.rows.get(table, key)? {
            Some(value) => decode(what, &value).map(Some),
            None => Ok(None),
        }
    }

    /// An authority row, its MAC checked.
    fn get_sealed<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.rows.get(table, key)? {
            Some(value) => decode_sealed(self.sealer, table.name, key, &value).map(Some),
            None => Ok(None),
        }
    }

    /// Every row of `table` in key order, each MAC checked.
    fn all_sealed<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
    ) -> Result<Vec<T>, StoreError> {
        self.rows
            .scan(table, None, None, false)?
            .iter()
            .map(|(key, value)| decode_sealed(self.sealer, table.name, key, value))
            .collect()
    }

    /// Numbered rows after `after`, at most `limit`.
    fn numbered_after(
        &self,
        table: Table,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.rows
            .scan(table, Some(&after.to_be_bytes()), Some(limit), false)?
            .into_iter()
            .map(|(key, value)| Ok((seq_of(table, &key)?, value)))
            .collect()
    }
}

impl<R: RowsWrite> Typed<'_, R> {
    /// Seals `value` and stores it under `key`.
    fn put_sealed<T: serde::Serialize>(
        &mut self,
        table: Table,
        key: &[u8],
        value: &T,
    ) -> Result<(), StoreError> {
        let row = encode_sealed(self.sealer, table.name, key, value)?;
        self.rows.put(table, key, &row)?;
        self.authority_changed |= table.is_authority();
        Ok(())
    }
}

impl<R: RowsRead> StoreRead for Typed<'_, R> {
    fn record(&self, handle: &Handle) -> Result<Option<Record>, StoreError> {
        self.get_decoded(tables::RECORDS, handle.as_str().as_bytes(), "record")
    }

    fn index_lookup(&self, tenant: &str, index: &[u8; 32]) -> Result<Option<Handle>, StoreError> {
        match self.rows.get(tables::INDEX, &index_key(tenant, index))? {
            Some(value) => std::str::from_utf8(&value)
                .ok()
                .and_then(|text| Handle::parse(text).ok())
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt("blind index entry".into())),
            None => Ok(None),
        }
    }

    fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        self.get_sealed(tables::TENANTS, id.as_bytes())
    }

    fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.all_sealed(tables::TENANTS)
    }

    fn operator(&self, id: &str) -> Result<Option<Operator>, StoreError> {
        self.get_sealed(tables::OPERATORS, id.as_bytes())
    }

    fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        self.all_sealed(tables::OPERATORS)
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.get_sealed(tables::TOKENS, id.as_bytes())
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.all_sealed(tables::TOKENS)
    }

    fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.rows
            .last(tables::AUDIT)?
            .map(|(key, value)| Ok((seq_of(tables::AUDIT, &key)?, value)))
            .transpose()
    }

    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.numbered_after(tables::AUDIT, after, limit)
    }

    fn audit_tail(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut rows = self
            .rows
            .scan(tables::AUDIT, None, Some(limit), true)?
            .into_iter()
            .map(|(key, value)| Ok((seq_of(tables::AUDIT, &key)?, value)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        rows.reverse();
        Ok(rows)
    }

    fn checkpoints_after(&self, after: u64, limit: usize) -> Result<Vec<Checkpoint>, StoreError> {
        self.numbered_after(tables::CHECKPOINTS, after, limit)?
            .iter()
            .map(|(_, bytes)| decode("checkpoint", bytes))
            .collect()
    }

    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        match self.rows.last(tables::CHECKPOINTS)? {
            Some((_, bytes)) => decode("checkpoint", &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn audit_keys(&self) -> Result<Vec<AuditKeyRecord>, StoreError> {
        self.all_sealed(tables::AUDIT_KEYS)
    }

    fn authority_digest(&self) -> Result<[u8; 32], StoreError> {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        for table in tables::AUTHORITY {
            for (key, value) in self.rows.scan(table, None, None, false)? {
                digest_row(&mut context, table.name, &key, &value);
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(context.finish().as_ref());
        Ok(out)
    }

    fn authority_state(&self) -> Result<Option<AuthorityState>, StoreError> {
        self.get_sealed(tables::STATE, STATE_KEY.as_bytes())
    }

    fn checkpoint_state(&self) -> Result<Option<CheckpointState>, StoreError> {
        self.get_sealed(tables::STATE, CHECKPOINT_STATE_KEY.as_bytes())
    }

    fn records_after(
        &self,
        after: Option<&Handle>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.rows
            .scan(
                tables::RECORDS,
                after.map(|handle| handle.as_str().as_bytes()),
                Some(limit),
                false,
            )?
            .iter()
            .map(|(_, value)| decode("record", value))
            .collect()
    }

    fn job(&self, tenant: &str) -> Result<Option<RewrapJob>, StoreError> {
        self.get_sealed(tables::JOBS, tenant.as_bytes())
    }

    fn jobs(&self) -> Result<Vec<RewrapJob>, StoreError> {
        self.all_sealed(tables::JOBS)
    }

    fn destructions(&self) -> Result<Vec<DestructionRequest>, StoreError> {
        self.all_sealed(tables::DESTRUCTIONS)
    }

    fn change_request(&self, id: &str) -> Result<Option<ChangeRequest>, StoreError> {
        self.get_sealed(tables::CHANGE_REQUESTS, id.as_bytes())
    }

    fn change_requests(&self) -> Result<Vec<ChangeRequest>, StoreError> {
        self.all_sealed(tables::CHANGE_REQUESTS)
    }

    fn epoch_key(&self, tenant: &str, epoch: u32) -> Result<Option<EpochKey>, StoreError> {
        self.get_sealed(tables::EPOCH_KEYS, epoch_key_id(tenant, epoch).as_bytes())
    }

    fn epoch_keys(&self) -> Result<Vec<EpochKey>, StoreError> {
        self.all_sealed(tables::EPOCH_KEYS)
    }

    fn disposal_queue(&self) -> Result<Vec<DisposalQueueEntry>, StoreError> {
        self.all_sealed(tables::DISPOSAL_QUEUE)
    }

    fn certificate(&self, handle: &Handle) -> Result<Option<DeletionCertificate>, StoreError> {
        self.get_sealed(tables::CERTIFICATES, handle.as_str().as_bytes())
    }

    fn correction(&self, id: &str) -> Result<Option<Correction>, StoreError> {
        self.get_sealed(tables::CORRECTIONS, id.as_bytes())
    }

    fn corrections(&self) -> Result<Vec<Correction>, StoreError> {
        self.all_sealed(tables::CORRECTIONS)
    }

    fn tenant_info(&self, tenant: &str) -> Result<Option<TenantInfo>, StoreError> {
        self.get_sealed(tables::TENANT_INFO, tenant.as_bytes())
    }
}

impl<R: RowsWrite> StoreWrite for Typed<'_, R> {
    fn put_record(&mut self, record: &Record) -> Result<(), StoreError> {
        self.rows.put(
            tables::RECORDS,
            record.handle.as_str().as_bytes(),
            &encode(record)?,
        )
    }

    fn put_index(
        &mut self,
        tenant: &str,
        index: &[u8; 32],
        handle: &Handle,
    ) -> Result<(), StoreError> {
        self.rows.put(
            tables::INDEX,
            &index_key(tenant, index),
            handle.as_str().as_bytes(),
        )
    }

    fn remove_index(&mut self, tenant: &str, index: &[u8; 32]) -> Result<(), StoreError> {
        self.rows.delete(tables::INDEX, &index_key(tenant, index))
    }

    fn put_tenant(&mut self, tenant: &Tenant) -> Result<(), StoreError> {
        self.put_sealed(tables::TENANTS, tenant.id.as_bytes(), tenant)
    }

    fn put_operator(&mut self, operator: &Operator) -> Result<(), StoreError> {
        self.put_sealed(tables::OPERATORS, operator.id.as_bytes(), operator)
    }

    fn put_token(&mut self, token: &TokenRecord) -> Result<(), StoreError> {
        self.put_sealed(tables::TOKENS, token.id.as_bytes(), token)
    }

    fn append_audit(&mut self, seq: u64, row: &[u8]) -> Result<(), StoreError> {
        self.rows.append_audit(seq, row)
    }

    fn append_audit_rows(&mut self, rows: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        self.rows.append_audit_rows(rows)
    }

    fn put_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.rows.put(
            tables::CHECKPOINTS,
            &checkpoint.seq.to_be_bytes(),
            &encode(checkpoint)?,
        )
    }

    fn put_audit_key(&mut self, key: &AuditKeyRecord) -> Result<(), StoreError> {
        self.put_sealed(tables::AUDIT_KEYS, &key.version.to_be_bytes(), key)
    }

    fn put_job(&mut self, job: &RewrapJob) -> Result<(), StoreError> {
        self.put_sealed(tables::JOBS, job.tenant.as_bytes(), job)
    }

    fn put_destruction(&mut self, request: &DestructionRequest) -> Result<(), StoreError> {
        self.put_sealed(tables::DESTRUCTIONS, request.id.as_bytes(), request)
    }

    fn put_change_request(&mut self, request: &ChangeRequest) -> Result<(), StoreError> {
        self.put_sealed(tables::CHANGE_REQUESTS, request.id.as_bytes(), request)
    }

    fn put_epoch_key(&mut self, key: &EpochKey) -> Result<(), StoreError> {
        self.put_sealed(
            tables::EPOCH_KEYS,
            epoch_key_id(&key.tenant, key.epoch).as_bytes(),
            key,
        )
    }

    fn queue_disposal(&mut self, entry: &DisposalQueueEntry) -> Result<(), StoreError> {
        let key = disposal_key(&entry.dispose_on, &entry.handle);
        self.put_sealed(tables::DISPOSAL_QUEUE, key.as_bytes(), entry)
    }

    fn unqueue_disposal(&mut self, dispose_on: &str, handle: &Handle) -> Result<(), StoreError> {
        self.rows.delete(
            tables::DISPOSAL_QUEUE,
            disposal_key(dispose_on, handle.as_str()).as_bytes(),
        )
    }

    fn put_certificate(&mut self, certificate: &DeletionCertificate) -> Result<(), StoreError> {
        self.put_sealed(
            tables::CERTIFICATES,
            certificate.handle.as_bytes(),
            certificate,
        )
    }

    fn put_correction(&mut self, correction: &Correction) -> Result<(), StoreError> {
        self.put_sealed(tables::CORRECTIONS, correction.id.as_bytes(), correction)
    }

    fn remove_correction(&mut self, id: &str) -> Result<(), StoreError> {
        self.rows.delete(tables::CORRECTIONS, id.as_bytes())
    }

    fn put_tenant_info(&mut self, info: &TenantInfo) -> Result<(), StoreError> {
        self.put_sealed(tables::TENANT_INFO, info.tenant.as_bytes(), info)
    }

    fn authority_changed(&self) -> bool {
        self.authority_changed
    }

    fn put_authority_state(&mut self, state: &AuthorityState) -> Result<(), StoreError> {
        self.put_sealed(tables::STATE, STATE_KEY.as_bytes(), state)
    }

    fn put_checkpoint_state(&mut self, state: &CheckpointState) -> Result<(), StoreError> {
        self.put_sealed(tables::STATE, CHECKPOINT_STATE_KEY.as_bytes(), state)
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Box::new(self.rows).commit()
    }
}
