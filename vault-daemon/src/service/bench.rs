//! The key backend's raw unwrap rate, measured inside the daemon: the baseline of
//! `vault-client bench --baseline`. No number is involved; the call is audited.

use std::sync::Arc;

use crate::audit::entry::EntryOutcome;
use crate::domain::policy::Action;
use crate::domain::text;
use crate::error::{Error, Result};
use crate::service::{Locker, RequestContext};
use crate::store::mutation::Mutation;

impl Locker {
    /// Runs `count` unwraps of a throw-away DEK under the tenant's active KEK, `concurrency` at a
    /// time, and returns the seconds taken and the backend's name (benchmark baseline).
    pub async fn bench_backend(
        &self,
        ctx: &RequestContext,
        tenant: &str,
        count: u32,
        concurrency: u32,
    ) -> Result<(f64, &'static str)> {
        let (_caller, mut entry) = self.begin(ctx, Action::BenchBackend).await?;
        let body = async {
            text::identifier("tenant", tenant).map_err(Error::InvalidArgument)?;
            entry.tenant = tenant.to_owned();
            if count == 0 || count > 100_000 {
                return Err(Error::InvalidArgument(
                    "count must be between 1 and 100000".into(),
                ));
            }
            let found = self
                .store
                .view()?
                .tenants()
                .get(tenant)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no tenant {tenant}")))?;
            let kek = crate::keys::KeyRef(
                found
                    .active_keys()
                    .ok_or_else(|| Error::Internal("tenant has no active key".into()))?
                    .kek
                    .clone(),
            );
            let aad = b"MNL-BENCH".to_vec();
            let wrapped = self
                .keys
                .wrap(
                    kek.clone(),
                    zeroize::Zeroizing::new(vec![0x5a; 32]),
                    aad.clone(),
                )
                .await?;
            let started = std::time::Instant::now();
            let slots = Arc::new(tokio::sync::Semaphore::new(
                concurrency.clamp(1, 256) as usize
            ));
            let mut tasks = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let (keys, kek, wrapped, aad, slots) = (
                    self.keys.clone(),
                    kek.clone(),
                    wrapped.clone(),
                    aad.clone(),
                    Arc::clone(&slots),
                );
                tasks.push(tokio::spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    keys.unwrap(kek, wrapped, aad).await.map(drop)
                }));
            }
            for task in tasks {
                task.await
                    .map_err(|_| Error::Internal("bench task failed".into()))??;
            }
            let seconds = started.elapsed().as_secs_f64();
            entry.allow(format!("{count} backend unwraps in {seconds:.3} s"));
            Ok(((seconds, self.keys.backend_name()), Mutation::None))
        }
        .await;
        self.finish(entry, body).await.map(|(r, _)| r)
    }
}
