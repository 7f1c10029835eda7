//! Authentication: from a bearer token to an operator. Every refusal says why, in words that
//! never contain the token.

use secrecy::SecretString;

use crate::audit::entry::AuditEntry;
use crate::domain::token::{hashes_equal, token_hash, token_id};
use crate::error::{Error, Reason, Result};
use crate::service::{Caller, Locker, RequestContext};

impl Locker {
    /// Resolves the caller. Fills `entry.operator` as soon as the token names a real operator,
    /// so refusals of expired or revoked tokens are attributed in the audit log.
    pub(super) async fn authenticate(
        &self,
        ctx: &RequestContext,
        entry: &mut AuditEntry,
    ) -> Result<Caller> {
        let token: &SecretString = ctx.token.as_ref().ok_or_else(|| {
            Error::Unauthenticated("missing bearer token".into()).because(Reason::TokenMissing)
        })?;
        let id = token_id(token).map_err(|_| {
            Error::Unauthenticated("malformed bearer token".into()).because(Reason::TokenMalformed)
        })?;
        // The public id only (the part before the secret), also when the token is refused.
        entry.token_id = id.clone();
        let view = self.store.view()?;
        let unknown =
            || Error::Unauthenticated("unknown bearer token".into()).because(Reason::TokenUnknown);
        let record = view.tokens().get(&id).await?.ok_or_else(unknown)?;
        if !hashes_equal(&token_hash(token), &record.hash) {
            return Err(unknown());
        }
        entry.operator = record.operator_id.clone();
        if record.revoked {
            return Err(Error::Unauthenticated("token has been revoked".into())
                .because(Reason::TokenRevoked));
        }
        if self.now_ms() >= record.expires_at_ms {
            return Err(
                Error::Unauthenticated("token has expired".into()).because(Reason::TokenExpired)
            );
        }
        if let Some(bound) = &record.cert_fingerprint
            && ctx.cert_fingerprint.as_deref() != Some(bound.as_str())
        {
            return Err(Error::Unauthenticated(
                "token is bound to a client certificate this connection did not present".into(),
            )
            .because(Reason::CertificateMismatch));
        }
        let operator = view
            .operators()
            .get(&record.operator_id)
            .await?
            .ok_or_else(|| Error::Unauthenticated("token's operator no longer exists".into()))?;
        entry.role = operator.role.as_str().into();
        if operator.disabled {
            return Err(Error::Unauthenticated("operator is disabled".into())
                .because(Reason::OperatorDisabled));
        }
        Ok(Caller {
            operator,
            token_id: record.id,
        })
    }
}
