//! Authentication: from a bearer token to an operator. Every refusal says why, in words that
//! never contain the token.
//!
//! The token and its operator are taken from the daemon's
//! [`AuthorityView`](crate::audit::authority::AuthorityView): the rows as the authenticated log
//! says they are now, in memory, not read from the store (a row put back in the store from an
//! older copy decides nothing; the view's periodic hash of the tables finds it and stops the
//! daemon). The snapshot decided on goes with the call to the audit writer, which checks it
//! again where the call's entry lands in the log: a token revoked or an operator disabled on
//! another daemon meanwhile refuses the call there (see `audit::writer`).

use std::sync::Arc;

use secrecy::SecretString;

use crate::audit::authority::AuthoritySnapshot;
use crate::audit::entry::AuditEntry;
use crate::audit::writer::Decided;
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
        let unknown =
            || Error::Unauthenticated("unknown bearer token".into()).because(Reason::TokenUnknown);
        let hash = token_hash(token);
        let mut authority = self.writer.authority().snapshot();
        // A token issued on another daemon a moment ago is not in this view yet: the log is
        // verified up to the store's head first (at most every few milliseconds, so a flood of
        // junk tokens costs no more).
        let known = |snapshot: &AuthoritySnapshot| {
            snapshot
                .token(&id)
                .is_some_and(|record| hashes_equal(&hash, &record.hash))
        };
        if !known(&authority) && self.shares_store() && self.writer.authority().catch_up_due() {
            self.writer.check().await?;
            authority = self.writer.authority().snapshot();
        }
        if !known(&authority) {
            return Err(unknown());
        }
        let record = authority.token(&id).cloned().ok_or_else(unknown)?;
        let operator = authority.operator(&record.operator_id).cloned();
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
        let operator = operator
            .ok_or_else(|| Error::Unauthenticated("token's operator no longer exists".into()))?;
        entry.role = operator.role.as_str().into();
        if operator.disabled {
            return Err(Error::Unauthenticated("operator is disabled".into())
                .because(Reason::OperatorDisabled));
        }
        Ok(Caller {
            decided: Decided {
                authority: Arc::clone(&authority),
                token_id: record.id.clone(),
                operator_id: operator.id.clone(),
            },
            operator,
            token_id: record.id,
        })
    }
}
