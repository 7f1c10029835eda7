//! Dual control (第37・38条 separation of duties): a change that can give someone the power to
//! unseal (an operator, a grant, a token for another operator, an enabled operator) or that
//! changes how many approvals are needed is not applied when an admin asks for it. It becomes
//! a [`ChangeRequest`] that takes effect only once `quorum` other admins, each an admin since
//! before the request was made, have approved it.

use serde::{Deserialize, Serialize};

use crate::domain::operator::{Grant, Operator, Role};
use crate::domain::token::TokenRecord;

/// Approvals a change needs when no quorum change was ever applied: one admin besides the
/// requester, so two people.
pub const DEFAULT_QUORUM: u32 = 1;
/// The largest quorum: more approvers than this would leave most offices unable to act.
pub const MAX_QUORUM: u32 = 5;

/// A change held until approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GatedChange {
    /// Create an operator (any role, admins included).
    CreateOperator(Operator),
    /// Enable a disabled operator again.
    EnableOperator(String),
    /// Grant purposes to an operator.
    Grant {
        /// The operator.
        operator_id: String,
        /// The grants to add.
        grants: Vec<Grant>,
    },
    /// Store a token issued for another operator. Only its hash is held; the requester got
    /// the secret when asking, and it works once the request is applied.
    IssueToken(TokenRecord),
    /// Change the number of approvals every later request needs.
    SetQuorum(u32),
    /// Store a token for another operator made of two shares (split knowledge): the requester
    /// got share 1; share 2 is drawn for the approver whose approval applies the request. The
    /// token's hash is set then; until both shares are combined, nobody holds a working token.
    IssueSplitToken(Box<SplitTokenRequest>),
}

/// A token for another operator, held with what its approvers must see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitTokenRequest {
    /// The token; its hash is zero until the request is applied.
    pub token: TokenRecord,
    /// SHA-256 of share 1's secret (the requester holds the share).
    pub first_share_hash: [u8; 32],
    /// The operator's role when the request was made.
    pub role: Role,
    /// Its grants then.
    pub grants: Vec<Grant>,
    /// Whether it was disabled then.
    pub disabled: bool,
}

impl SplitTokenRequest {
    /// What a careful approver must know, in plain words and Japan's time.
    fn summary(&self, requested_by: &str) -> String {
        let token = &self.token;
        let grants = if self.grants.is_empty() {
            "no purposes".to_owned()
        } else {
            self.grants
                .iter()
                .map(|g| format!("{}/{}", g.tenant, g.purpose))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let binding = match &token.cert_fingerprint {
            Some(fingerprint) => format!(
                "bound to the client certificate with SHA-256 {fingerprint}: it works only over a TLS connection that presents it"
            ),
            None => "not bound to a client certificate: whoever holds both shares can use it from anywhere".to_owned(),
        };
        format!(
            "token {} for operator {} ({}{}; {grants}); valid until {}; {binding}; split knowledge: {requested_by} (the requester) holds share 1, the admin whose approval applies this request receives share 2, and only both combined (vault-client token combine) work — hand each to the operator's holder separately",
            token.id,
            token.operator_id,
            self.role.as_str(),
            if self.disabled { ", disabled" } else { "" },
            crate::domain::lifecycle::jst_time(token.expires_at_ms),
        )
    }
}

impl GatedChange {
    /// Short name for lists and the API.
    pub fn kind(&self) -> &'static str {
        match self {
            GatedChange::CreateOperator(_) => "create_operator",
            GatedChange::EnableOperator(_) => "enable_operator",
            GatedChange::Grant { .. } => "grant",
            GatedChange::IssueToken(_) | GatedChange::IssueSplitToken(_) => "issue_token",
            GatedChange::SetQuorum(_) => "set_quorum",
        }
    }

    /// The operator the change is about, if any.
    pub fn operator_id(&self) -> Option<&str> {
        match self {
            GatedChange::CreateOperator(operator) => Some(&operator.id),
            GatedChange::EnableOperator(id) => Some(id),
            GatedChange::Grant { operator_id, .. } => Some(operator_id),
            GatedChange::IssueToken(token) => Some(&token.operator_id),
            GatedChange::IssueSplitToken(split) => Some(&split.token.operator_id),
            GatedChange::SetQuorum(_) => None,
        }
    }

    /// What an approver is asked to agree to, for humans (no secrets: a token appears by id);
    /// `requested_by` is the requesting admin.
    pub fn summary(&self, requested_by: &str) -> String {
        match self {
            GatedChange::IssueSplitToken(split) => split.summary(requested_by),
            GatedChange::CreateOperator(operator) => format!(
                "create operator {} as {}",
                operator.id,
                operator.role.as_str()
            ),
            GatedChange::EnableOperator(id) => format!("enable operator {id}"),
            GatedChange::Grant {
                operator_id,
                grants,
            } => {
                let list: Vec<String> = grants
                    .iter()
                    .map(|g| format!("{}/{}", g.tenant, g.purpose))
                    .collect();
                format!("grant {} to operator {operator_id}", list.join(","))
            }
            GatedChange::IssueToken(token) => format!(
                "token {} for operator {}, valid until {} (requested before split knowledge: {requested_by} holds the whole secret)",
                token.id,
                token.operator_id,
                crate::domain::lifecycle::jst_time(token.expires_at_ms)
            ),
            GatedChange::SetQuorum(quorum) => {
                format!("require {quorum} approvals for every later change")
            }
        }
    }

    /// Whether the change creates an admin (so the new admin cannot approve older requests).
    pub fn creates_admin(&self) -> bool {
        matches!(self, GatedChange::CreateOperator(op) if op.role == Role::Admin)
    }
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The approving admin.
    pub by: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// Where a request is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeState {
    /// Collecting approvals.
    Pending,
    /// Approved by the quorum and applied.
    Applied {
        /// Milliseconds since the Unix epoch.
        at_ms: i64,
    },
    /// Refused by an admin (or withdrawn by its requester).
    Denied {
        /// Who.
        by: String,
        /// Why, in the admin's words.
        reason: String,
        /// Milliseconds since the Unix epoch.
        at_ms: i64,
    },
}

/// A change waiting for, or decided by, other admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequest {
    /// Request id (16 hex digits).
    pub id: String,
    /// The change.
    pub change: GatedChange,
    /// The requesting admin.
    pub requested_by: String,
    /// Milliseconds since the Unix epoch.
    pub requested_at_ms: i64,
    /// Not approvable from this time on.
    pub expires_at_ms: i64,
    /// Approvals so far (never the requester's).
    pub approvals: Vec<Approval>,
    /// Approvals needed, fixed when the request was made.
    pub required: u32,
    /// State.
    pub state: ChangeState,
}

impl ChangeRequest {
    /// Whether the request still collects approvals at `now_ms`.
    pub fn open_at(&self, now_ms: i64) -> bool {
        self.state == ChangeState::Pending && now_ms < self.expires_at_ms
    }

    /// State name: `pending`, `applied`, `denied` or `expired`.
    pub fn state_name(&self, now_ms: i64) -> &'static str {
        match self.state {
            ChangeState::Pending if now_ms >= self.expires_at_ms => "expired",
            ChangeState::Pending => "pending",
            ChangeState::Applied { .. } => "applied",
            ChangeState::Denied { .. } => "denied",
        }
    }
}

/// Why `approver` may not approve a request made by `requested_by` at `requested_at_ms`
/// (`None`: it may). The approver must be another enabled admin who was an admin before the
/// request was made, so an admin cannot approve its own request nor one through an admin it
/// created for the purpose.
pub fn approver_refusal(
    approver: &Operator,
    requested_by: &str,
    requested_at_ms: i64,
    earlier: &[Approval],
) -> Option<String> {
    if approver.id == requested_by {
        return Some(format!(
            "{} made this request: another admin must approve it",
            approver.id
        ));
    }
    if approver.role != Role::Admin || approver.disabled {
        return Some(format!("{} is not an enabled admin", approver.id));
    }
    if approver.created_at_ms >= requested_at_ms {
        return Some(format!(
            "{} became an admin after the request was made and may not approve it",
            approver.id
        ));
    }
    if earlier.iter().any(|a| a.by == approver.id) {
        return Some(format!("{} has approved this request already", approver.id));
    }
    None
}

/// The quorum in force: the newest applied quorum change, else [`DEFAULT_QUORUM`].
pub fn quorum_in_force<'a>(requests: impl IntoIterator<Item = &'a ChangeRequest>) -> u32 {
    requests
        .into_iter()
        .filter_map(|r| match (&r.change, &r.state) {
            (GatedChange::SetQuorum(q), ChangeState::Applied { at_ms }) => Some((*at_ms, *q)),
            _ => None,
        })
        .max()
        .map_or(DEFAULT_QUORUM, |(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(id: &str, created_at_ms: i64) -> Operator {
        Operator {
            id: id.into(),
            role: Role::Admin,
            display_name: id.into(),
            disabled: false,
            grants: Vec::new(),
            created_at_ms,
        }
    }

    #[test]
    fn only_an_older_other_enabled_admin_approves_once() {
        assert!(approver_refusal(&admin("b", 10), "a", 100, &[]).is_none());
        assert!(approver_refusal(&admin("a", 10), "a", 100, &[]).is_some());
        assert!(approver_refusal(&admin("b", 100), "a", 100, &[]).is_some());
        assert!(approver_refusal(&admin("b", 200), "a", 100, &[]).is_some());
        let mut disabled = admin("b", 10);
        disabled.disabled = true;
        assert!(approver_refusal(&disabled, "a", 100, &[]).is_some());
        let mut manager = admin("b", 10);
        manager.role = Role::Manager;
        assert!(approver_refusal(&manager, "a", 100, &[]).is_some());
        let twice = [Approval {
            by: "b".into(),
            at_ms: 50,
        }];
        assert!(approver_refusal(&admin("b", 10), "a", 100, &twice).is_some());
    }

    #[test]
    fn the_newest_applied_quorum_change_rules() {
        let request = |q, state| ChangeRequest {
            id: "00".into(),
            change: GatedChange::SetQuorum(q),
            requested_by: "a".into(),
            requested_at_ms: 0,
            expires_at_ms: 10,
            approvals: Vec::new(),
            required: 1,
            state,
        };
        assert_eq!(quorum_in_force([]), DEFAULT_QUORUM);
        let list = [
            request(3, ChangeState::Applied { at_ms: 5 }),
            request(2, ChangeState::Applied { at_ms: 9 }),
            request(4, ChangeState::Pending),
        ];
        assert_eq!(quorum_in_force(&list), 2);
    }
}
