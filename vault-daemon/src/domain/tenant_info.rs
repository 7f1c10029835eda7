//! What the 特定個人情報管理台帳 (規程第16条) says about a tenant's file beyond what the store
//! knows by itself: its kind and name, who is responsible, and where it is kept and handled.

use serde::{Deserialize, Serialize};

/// A tenant's ledger details, set by an admin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// Tenant id.
    pub tenant: String,
    /// 特定個人情報ファイルの種類.
    pub file_kind: String,
    /// 特定個人情報ファイルの名称.
    pub file_name: String,
    /// 責任者.
    pub responsible_person: String,
    /// 取扱部署.
    pub responsible_department: String,
    /// 管理区域.
    pub management_area: String,
    /// 取扱区域.
    pub handling_area: String,
}

/// A change to some of a tenant's ledger details: `None` keeps a field as it is, `Some("")`
/// clears it. Applied inside the writer's transaction, so two admins changing different fields
/// at once both keep their change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantInfoPatch {
    /// Tenant id.
    pub tenant: String,
    /// 特定個人情報ファイルの種類.
    pub file_kind: Option<String>,
    /// 特定個人情報ファイルの名称.
    pub file_name: Option<String>,
    /// 責任者.
    pub responsible_person: Option<String>,
    /// 取扱部署.
    pub responsible_department: Option<String>,
    /// 管理区域.
    pub management_area: Option<String>,
    /// 取扱区域.
    pub handling_area: Option<String>,
}

impl From<TenantInfo> for TenantInfoPatch {
    /// Every field replaced (what `SetTenantInfo` does).
    fn from(info: TenantInfo) -> TenantInfoPatch {
        TenantInfoPatch {
            tenant: info.tenant,
            file_kind: Some(info.file_kind),
            file_name: Some(info.file_name),
            responsible_person: Some(info.responsible_person),
            responsible_department: Some(info.responsible_department),
            management_area: Some(info.management_area),
            handling_area: Some(info.handling_area),
        }
    }
}

impl TenantInfoPatch {
    /// The fields given, with their names, for validation and the audit entry.
    pub fn given(&self) -> Vec<(&'static str, &str)> {
        [
            ("file_kind", &self.file_kind),
            ("file_name", &self.file_name),
            ("responsible_person", &self.responsible_person),
            ("responsible_department", &self.responsible_department),
            ("management_area", &self.management_area),
            ("handling_area", &self.handling_area),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
        .collect()
    }

    /// `current` with the given fields replaced.
    pub fn apply(&self, current: Option<TenantInfo>) -> TenantInfo {
        let mut info = current.unwrap_or_else(|| TenantInfo {
            tenant: self.tenant.clone(),
            ..TenantInfo::default()
        });
        let set = |field: &mut String, value: &Option<String>| {
            if let Some(value) = value {
                field.clone_from(value);
            }
        };
        set(&mut info.file_kind, &self.file_kind);
        set(&mut info.file_name, &self.file_name);
        set(&mut info.responsible_person, &self.responsible_person);
        set(
            &mut info.responsible_department,
            &self.responsible_department,
        );
        set(&mut info.management_area, &self.management_area);
        set(&mut info.handling_area, &self.handling_area);
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_changes_only_the_fields_given_and_an_empty_one_clears() {
        let current = TenantInfo {
            tenant: "acme".into(),
            file_kind: "源泉徴収票".into(),
            responsible_person: "佐藤".into(),
            handling_area: "本社3F".into(),
            ..TenantInfo::default()
        };
        let patch = TenantInfoPatch {
            tenant: "acme".into(),
            responsible_person: Some("鈴木".into()),
            handling_area: Some(String::new()),
            ..TenantInfoPatch::default()
        };
        let after = patch.apply(Some(current));
        assert_eq!(after.file_kind, "源泉徴収票");
        assert_eq!(after.responsible_person, "鈴木");
        assert_eq!(after.handling_area, "");
        assert_eq!(patch.given().len(), 2);
        assert_eq!(patch.apply(None).tenant, "acme");
    }
}
