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

impl TenantInfo {
    /// The free-text fields with their names, for validation.
    pub fn fields(&self) -> [(&'static str, &str); 6] {
        [
            ("file_kind", &self.file_kind),
            ("file_name", &self.file_name),
            ("responsible_person", &self.responsible_person),
            ("responsible_department", &self.responsible_department),
            ("management_area", &self.management_area),
            ("handling_area", &self.handling_area),
        ]
    }
}
