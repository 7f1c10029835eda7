//! Operators (利用者, 第37・38条), their roles and grants, and tenants (事業所).

use serde::{Deserialize, Serialize};

/// What an operator may do. Each operator has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// 特定個人情報管理責任者: operators, tenants, keys. Never unseals.
    Admin,
    /// 事務取扱責任者: disposal, audit of its tenants. Never unseals.
    Manager,
    /// 事務取扱担当者: seal, unseal, lookup within its grants.
    Handler,
    /// A payroll or insurance system; like a handler.
    Service,
    /// 監査責任者: reads and verifies the audit log. Never unseals.
    Auditor,
}

impl Role {
    /// The role named `name` (as [`Role::as_str`] writes it), if any.
    pub fn from_name(name: &str) -> Option<Role> {
        [
            Role::Admin,
            Role::Manager,
            Role::Handler,
            Role::Service,
            Role::Auditor,
        ]
        .into_iter()
        .find(|role| role.as_str() == name)
    }

    /// Lowercase name used in audit entries and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Handler => "handler",
            Role::Service => "service",
            Role::Auditor => "auditor",
        }
    }
}

/// Permission to use numbers of one tenant for one purpose.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// Tenant id.
    pub tenant: String,
    /// Purpose code.
    pub purpose: String,
}

/// An operator account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Login id.
    pub id: String,
    /// The one role.
    pub role: Role,
    /// Name for humans.
    pub display_name: String,
    /// A disabled operator's tokens are refused.
    pub disabled: bool,
    /// Sorted (tenant, purpose) grants.
    pub grants: Vec<Grant>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

impl Operator {
    /// Whether the operator holds any grant on `tenant` (its tenant scope).
    pub fn has_tenant(&self, tenant: &str) -> bool {
        self.grants.iter().any(|g| g.tenant == tenant)
    }

    /// Whether the operator holds `purpose` on `tenant`.
    pub fn has_grant(&self, tenant: &str, purpose: &str) -> bool {
        self.grants
            .iter()
            .any(|g| g.tenant == tenant && g.purpose == purpose)
    }
}

/// Where a key version is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    /// Used for new seals.
    Active,
    /// Kept to open records not yet rewrapped; never used for new seals.
    DecryptOnly,
    /// Destroyed in the backend: records still under it cannot be opened, backups included.
    Destroyed,
}

impl KeyState {
    /// Name for humans and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::DecryptOnly => "decrypt-only",
            KeyState::Destroyed => "destroyed",
        }
    }
}

/// Key references of one version of a tenant's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantKeys {
    /// Key version, from 1.
    pub version: u32,
    /// Backend reference of the key-encryption key.
    pub kek: Vec<u8>,
    /// Backend reference of the blind-index MAC key.
    pub mac: Vec<u8>,
    /// Life-cycle state.
    pub state: KeyState,
}

/// A tenant (事業所 or entrusting employer): its records are keyed separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Short id used in the API.
    pub id: String,
    /// Name for humans.
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Every key version, oldest first; the last is the active one.
    pub keys: Vec<TenantKeys>,
}

impl Tenant {
    /// The key version used for new seals.
    pub fn active_keys(&self) -> Option<&TenantKeys> {
        self.keys.iter().rev().find(|k| k.state == KeyState::Active)
    }

    /// Versions whose MAC key may still have blind-index entries, newest first.
    pub fn index_keys(&self) -> impl Iterator<Item = &TenantKeys> {
        self.keys
            .iter()
            .rev()
            .filter(|k| k.state != KeyState::Destroyed)
    }

    /// Keys of a given version.
    pub fn keys_of(&self, version: u32) -> Option<&TenantKeys> {
        self.keys.iter().find(|k| k.version == version)
    }
}
