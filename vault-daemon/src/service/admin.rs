//! Administration: tenants and their keys, operators, grants, tokens and the purpose list.

use secrecy::SecretString;

use super::invalid;
use crate::audit::entry::AuditEntry;
use crate::audit::entry::EntryOutcome;
use crate::domain::approval::{GatedChange, SplitTokenRequest};
use crate::domain::operator::{Grant, KeyState, Operator, Role, Tenant, TenantKeys};
use crate::domain::policy::Action;
use crate::domain::purpose::Purpose;
use crate::domain::text;
use crate::domain::token::{self, TokenRecord};
use crate::error::{Error, Result};
use crate::keys::KeyUse;
use crate::service::{Caller, Gated, Locker, RequestContext};
use crate::store::mutation::{Mutation, MutationOutcome, OperatorChange};

/// A tenant to create.
pub struct NewTenant {
    /// Id (a-z, 0-9, `-`, `_`, `.`).
    pub id: String,
    /// Name for humans.
    pub name: String,
}

/// An operator to create.
pub struct NewOperator {
    /// Id.
    pub id: String,
    /// Role; `None` when the caller did not say.
    pub role: Option<Role>,
    /// Name for humans.
    pub display_name: String,
}

/// A token to issue.
pub struct TokenRequest {
    /// Operator the token acts as.
    pub operator_id: String,
    /// Lifetime in seconds; 0 for the default.
    pub ttl_secs: u64,
    /// Client certificate fingerprint to bind to (hex SHA-256), or empty.
    pub cert_fingerprint: String,
}

fn check_operator_id(id: &str, entry: &mut AuditEntry) -> Result<()> {
    text::identifier("operator_id", id).map_err(invalid)?;
    entry.reason = format!("operator {id}");
    Ok(())
}

fn outcome_operator(outcome: MutationOutcome) -> Result<Operator> {
    match outcome {
        MutationOutcome::Operator(operator) => Ok(*operator),
        other => Err(Error::Internal(format!("unexpected outcome {other:?}"))),
    }
}

impl Locker {
    /// Creates a tenant and its first key version in the backend.
    pub async fn create_tenant(&self, ctx: &RequestContext, new: NewTenant) -> Result<Tenant> {
        let (_caller, mut entry) = self.begin(ctx, Action::TenantCreate).await?;
        let body = self.create_tenant_body(&mut entry, new).await;
        self.finish(entry, body).await.map(|(tenant, _)| tenant)
    }

    async fn create_tenant_body(
        &self,
        entry: &mut AuditEntry,
        new: NewTenant,
    ) -> Result<(Tenant, Mutation)> {
        text::identifier("tenant_id", &new.id).map_err(invalid)?;
        entry.tenant = new.id.clone();
        text::free_text("name", &new.name, 200, false).map_err(invalid)?;
        if self.store.view()?.tenants().get(&new.id).await?.is_some() {
            return Err(Error::AlreadyExists(format!(
                "tenant {} exists already",
                new.id
            )));
        }
        let tenant = self.new_tenant(new).await?;
        entry.allow("tenant created with key version 1");
        Ok((tenant.clone(), Mutation::CreateTenant(tenant)))
    }

    /// Builds a tenant with freshly created backend keys (shared with bootstrap).
    pub(super) async fn new_tenant(&self, new: NewTenant) -> Result<Tenant> {
        let kek = self
            .keys
            .create_key(KeyUse::Wrap, format!("kek/{}/1", new.id))
            .await?;
        let mac = self
            .keys
            .create_key(KeyUse::Mac, format!("mac/{}/1", new.id))
            .await?;
        Ok(Tenant {
            name: if new.name.is_empty() {
                new.id.clone()
            } else {
                new.name
            },
            id: new.id,
            created_at_ms: self.now_ms(),
            keys: vec![TenantKeys {
                version: 1,
                kek: kek.0,
                mac: mac.0,
                state: KeyState::Active,
            }],
        })
    }

    /// Lists tenants.
    pub async fn list_tenants(&self, ctx: &RequestContext) -> Result<Vec<Tenant>> {
        let (_caller, entry) = self.begin(ctx, Action::TenantList).await?;
        let body: Result<_> = async { Ok(self.store.view()?.tenants().list().await?) }.await;
        self.finish(entry, body.map(|t| (t, Mutation::None)))
            .await
            .map(|(t, _)| t)
    }

    /// Asks for an operator to be created: held until other admins approve (dual control).
    /// Returns the operator as it will be.
    pub async fn create_operator(
        &self,
        ctx: &RequestContext,
        new: NewOperator,
    ) -> Result<Gated<Operator>> {
        let (caller, mut entry) = self.begin(ctx, Action::OperatorCreate).await?;
        let body = async {
            check_operator_id(&new.id, &mut entry)?;
            let role = new.role.ok_or_else(|| invalid("role is required"))?;
            text::free_text("display_name", &new.display_name, 200, false).map_err(invalid)?;
            if self.store.view()?.operators().get(&new.id).await?.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "operator {} exists already",
                    new.id
                )));
            }
            let operator = self.operator(new.id, role, new.display_name);
            let mutation = self
                .hold_for_approval(
                    &caller,
                    &mut entry,
                    GatedChange::CreateOperator(operator.clone()),
                )
                .await?;
            Ok((operator, mutation))
        }
        .await;
        self.finish_held(entry, body).await
    }

    /// A new operator record (shared with bootstrap).
    pub(super) fn operator(&self, id: String, role: Role, display_name: String) -> Operator {
        Operator {
            display_name: if display_name.is_empty() {
                id.clone()
            } else {
                display_name
            },
            id,
            role,
            disabled: false,
            grants: Vec::new(),
            created_at_ms: self.now_ms(),
        }
    }

    /// Lists operators with their grants.
    pub async fn list_operators(&self, ctx: &RequestContext) -> Result<Vec<Operator>> {
        let (_caller, entry) = self.begin(ctx, Action::OperatorList).await?;
        let body: Result<_> = async { Ok(self.store.view()?.operators().list().await?) }.await;
        self.finish(entry, body.map(|o| (o, Mutation::None)))
            .await
            .map(|(o, _)| o)
    }

    /// Disables an operator (its tokens are refused from now on) at once, or asks for it to
    /// be enabled again (held for approval: enabling restores its power to unseal).
    pub async fn set_operator_disabled(
        &self,
        ctx: &RequestContext,
        id: &str,
        disabled: bool,
    ) -> Result<Gated<Operator>> {
        let action = if disabled {
            Action::OperatorDisable
        } else {
            Action::OperatorEnable
        };
        let (caller, mut entry) = self.begin(ctx, action).await?;
        let body = async {
            check_operator_id(id, &mut entry)?;
            if id == caller.operator.id {
                return Err(Error::FailedPrecondition(
                    "an admin cannot disable or enable itself; another admin must".into(),
                ));
            }
            let found = self.store.view()?.operators().get(id).await?;
            let Some(current) = found else {
                return Err(self.missing_operator(id).await);
            };
            if disabled {
                entry.allow(format!("operator {id} disabled"));
                let change = Mutation::ChangeOperator {
                    id: id.to_owned(),
                    change: OperatorChange::Disable,
                };
                return Ok((current, change));
            }
            if !current.disabled {
                return Err(Error::FailedPrecondition(format!(
                    "operator {id} is enabled already"
                )));
            }
            let mutation = self
                .hold_for_approval(
                    &caller,
                    &mut entry,
                    GatedChange::EnableOperator(id.to_owned()),
                )
                .await?;
            Ok((current, mutation))
        }
        .await;
        if disabled {
            let (_, outcome) = self.finish(entry, body).await?;
            return Ok(Gated {
                value: outcome_operator(outcome)?,
                request: None,
            });
        }
        self.finish_held(entry, body).await
    }

    /// Revokes purposes at once, or asks for purposes to be granted (held for approval).
    /// Returns the operator as it is now.
    pub async fn change_grants(
        &self,
        ctx: &RequestContext,
        operator_id: &str,
        tenant: &str,
        purposes: &[String],
        revoke: bool,
    ) -> Result<Gated<Operator>> {
        let action = if revoke {
            Action::Revoke
        } else {
            Action::Grant
        };
        let (caller, mut entry) = self.begin(ctx, action).await?;
        let body = self
            .grants_body(&caller, &mut entry, operator_id, tenant, purposes, revoke)
            .await;
        if revoke {
            let (_, outcome) = self.finish(entry, body).await?;
            return Ok(Gated {
                value: outcome_operator(outcome)?,
                request: None,
            });
        }
        self.finish_held(entry, body).await
    }

    async fn grants_body(
        &self,
        caller: &Caller,
        entry: &mut AuditEntry,
        operator_id: &str,
        tenant: &str,
        purposes: &[String],
        revoke: bool,
    ) -> Result<(Operator, Mutation)> {
        check_operator_id(operator_id, entry)?;
        text::identifier("tenant", tenant).map_err(invalid)?;
        entry.tenant = tenant.to_owned();
        let purposes = self
            .purposes
            .canonical_list(purposes)
            .map_err(super::input::purpose_error)?;
        let view = self.store.view()?;
        let Some(current) = view.operators().get(operator_id).await? else {
            return Err(self.missing_operator(operator_id).await);
        };
        let grants: Vec<Grant> = purposes
            .iter()
            .map(|purpose| Grant {
                tenant: tenant.to_owned(),
                purpose: purpose.clone(),
            })
            .collect();
        if revoke {
            entry.allow(format!(
                "{} revoked from operator {operator_id}",
                purposes.join(",")
            ));
            let change = Mutation::ChangeOperator {
                id: operator_id.to_owned(),
                change: OperatorChange::Revoke(grants),
            };
            return Ok((current, change));
        }
        if matches!(current.role, Role::Admin | Role::Auditor) {
            return Err(Error::FailedPrecondition(format!(
                "operator {operator_id} is an {}: grants apply to handlers, services and managers",
                current.role.as_str()
            )));
        }
        if view.tenants().get(tenant).await?.is_none() {
            return Err(Error::NotFound(format!("no tenant {tenant}")));
        }
        let mutation = self
            .hold_for_approval(
                caller,
                entry,
                GatedChange::Grant {
                    operator_id: operator_id.to_owned(),
                    grants,
                },
            )
            .await?;
        Ok((current, mutation))
    }

    /// Issues a token; the secret is returned once and never stored. An admin's own token is
    /// issued at once. A token for another operator is split in two shares (no single admin
    /// holds it) and held for approval: the value returned is then share 1, and the approval
    /// that applies the request hands share 2 to its approver.
    pub async fn issue_token(
        &self,
        ctx: &RequestContext,
        request: TokenRequest,
    ) -> Result<Gated<(SecretString, TokenRecord)>> {
        let (caller, mut entry) = self.begin(ctx, Action::TokenIssue).await?;
        let own = request.operator_id == caller.operator.id;
        if own {
            let body = self.issue_own_token(&mut entry, request).await;
            let (value, _) = self.finish(entry, body).await?;
            return Ok(Gated {
                value,
                request: None,
            });
        }
        let body = async {
            let (ttl_ms, fingerprint) = self.token_terms(&mut entry, &request)?;
            let found = self
                .store
                .view()?
                .operators()
                .get(&request.operator_id)
                .await?;
            let Some(operator) = found else {
                return Err(self.missing_operator(&request.operator_id).await);
            };
            let (share, record) =
                token::mint_split(&self.rng, &operator.id, self.now_ms(), ttl_ms, fingerprint)
                    .map_err(|_| Error::Internal("random generator failed".into()))?;
            let split = SplitTokenRequest {
                token: record.clone(),
                first_share_hash: share.hash,
                role: operator.role,
                grants: operator.grants.clone(),
                disabled: operator.disabled,
            };
            let held = self
                .hold_for_approval(
                    &caller,
                    &mut entry,
                    GatedChange::IssueSplitToken(Box::new(split)),
                )
                .await?;
            Ok(((share.text, record), held))
        }
        .await;
        self.finish_held(entry, body).await
    }

    /// The lifetime and certificate binding a token request asks for, checked.
    fn token_terms(
        &self,
        entry: &mut AuditEntry,
        request: &TokenRequest,
    ) -> Result<(i64, Option<String>)> {
        check_operator_id(&request.operator_id, entry)?;
        let ttl_ms = match request.ttl_secs {
            0 => self.token_policy.default_ttl_ms,
            secs => i64::try_from(secs)
                .ok()
                .and_then(|s| s.checked_mul(1000))
                .filter(|ms| *ms <= self.token_policy.max_ttl_ms)
                .ok_or_else(|| {
                    invalid(format!(
                        "ttl_seconds exceeds the maximum of {} seconds",
                        self.token_policy.max_ttl_ms / 1000
                    ))
                })?,
        };
        Ok((ttl_ms, normalise_fingerprint(&request.cert_fingerprint)?))
    }

    async fn issue_own_token(
        &self,
        entry: &mut AuditEntry,
        request: TokenRequest,
    ) -> Result<((SecretString, TokenRecord), Mutation)> {
        let (ttl_ms, fingerprint) = self.token_terms(entry, &request)?;
        let minted = token::mint(
            &self.rng,
            &request.operator_id,
            self.now_ms(),
            ttl_ms,
            fingerprint,
        )
        .map_err(|_| Error::Internal("random generator failed".into()))?;
        entry.allow(format!(
            "token {} issued to operator {}{}",
            minted.record.id,
            request.operator_id,
            if minted.record.cert_fingerprint.is_some() {
                ", bound to a client certificate"
            } else {
                ""
            }
        ));
        let record = minted.record.clone();
        Ok(((minted.secret, record), Mutation::IssueToken(minted.record)))
    }

    /// Revokes a token by id.
    pub async fn revoke_token(&self, ctx: &RequestContext, token_id: &str) -> Result<TokenRecord> {
        let (_caller, mut entry) = self.begin(ctx, Action::TokenRevoke).await?;
        let body = if token_id.len() == 16 && token_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            entry.allow(format!("token {token_id} revoked"));
            Ok(((), Mutation::RevokeToken(token_id.to_owned())))
        } else {
            Err(invalid("token_id must be the 16 hex digits shown at issue"))
        };
        match self.finish(entry, body).await? {
            (_, MutationOutcome::Token(token)) => Ok(token),
            (_, other) => Err(Error::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Lists tokens (ids, owners, expiry; never secrets), optionally for one operator.
    pub async fn list_tokens(
        &self,
        ctx: &RequestContext,
        operator_id: &str,
    ) -> Result<Vec<TokenRecord>> {
        let (_caller, entry) = self.begin(ctx, Action::TokenList).await?;
        let body: Result<Vec<TokenRecord>> =
            async { Ok(self.store.view()?.tokens().list().await?) }.await;
        let body = body.map(|tokens| {
            let tokens = tokens
                .into_iter()
                .filter(|t| operator_id.is_empty() || t.operator_id == operator_id)
                .collect();
            (tokens, Mutation::None)
        });
        self.finish(entry, body).await.map(|(t, _)| t)
    }

    /// The caller's operator and token (no secret).
    pub async fn whoami(&self, ctx: &RequestContext) -> Result<(Operator, TokenRecord)> {
        let (caller, entry) = self.begin(ctx, Action::WhoAmI).await?;
        let body = async {
            let token = self
                .store
                .view()?
                .tokens()
                .get(&caller.token_id)
                .await?
                .ok_or_else(|| Error::Internal("the caller's token vanished".into()))?;
            Ok((((*caller.operator).clone(), token), Mutation::None))
        }
        .await;
        self.finish(entry, body).await.map(|(found, _)| found)
    }

    /// The purpose catalogue.
    pub async fn list_purposes(&self, ctx: &RequestContext) -> Result<Vec<Purpose>> {
        let (_caller, entry) = self.begin(ctx, Action::PurposeList).await?;
        let purposes = self.purposes.iter().cloned().collect();
        self.finish(entry, Ok((purposes, Mutation::None)))
            .await
            .map(|(p, _)| p)
    }
}

fn normalise_fingerprint(text: &str) -> Result<Option<String>> {
    if text.is_empty() {
        return Ok(None);
    }
    let hex: String = text
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(Some(hex))
    } else {
        Err(invalid(
            "cert_fingerprint must be the hex SHA-256 of the client certificate (DER)",
        ))
    }
}
