//! The purpose catalogue: the business list of 第4条 of the handling rules, each purpose with
//! its code, article, Japanese label and the retention that follows the end of the relationship.
//!
//! The built-in default is the table of DESIGN.md; an office whose rules differ loads its own
//! from a TOML file (`[[purpose]]` entries with `code`, `article`, `label_ja`,
//! `retention_years`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// One purpose of use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    /// Stable code used in the API, e.g. `STAFF_WITHHOLDING`.
    pub code: String,
    /// The item of 第4条, e.g. `1-④`.
    pub article: String,
    /// The 事務 as the rules name it.
    pub label_ja: String,
    /// Years a number used for this purpose must be kept after the relationship ends.
    pub retention_years: u32,
}

/// Errors loading or using the catalogue.
#[derive(Debug, thiserror::Error)]
pub enum PurposeError {
    /// The catalogue file could not be read.
    #[error("cannot read purpose catalogue {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The catalogue file is not valid.
    #[error("invalid purpose catalogue {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The purposes an office may use numbers for, by code.
#[derive(Debug, Clone)]
pub struct PurposeCatalogue {
    by_code: BTreeMap<String, Purpose>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    purpose: Vec<Purpose>,
}

/// (code, article, label, retention years) of the default catalogue (DESIGN.md). Retention:
/// withholding-related 7 years (所得税法施行規則76条の3), 雇用保険 4 years (雇用保険法施行規則
/// 143条), 労災 3 years (労災保険法施行規則51条), 健保・厚年 2 years (健保則34条・厚年則28条),
/// other 労働保険 3 years (徴収法施行規則72条). Offices should confirm these before relying on
/// them; the file override exists for that.
const DEFAULTS: &[(&str, &str, &str, u32)] = &[
    (
        "STAFF_EMPLOYMENT_INSURANCE",
        "1-①",
        "雇用保険届出事務（適用・給付・助成金を含む）",
        4,
    ),
    (
        "STAFF_HEALTH_PENSION",
        "1-②",
        "健康保険・厚生年金保険届出事務",
        2,
    ),
    (
        "STAFF_WORKERS_COMP",
        "1-③",
        "労働者災害補償保険法に基づく請求に関する事務",
        3,
    ),
    (
        "STAFF_WITHHOLDING",
        "1-④",
        "給与所得・退職所得の源泉徴収票作成事務",
        7,
    ),
    ("PAYEE_FEES", "2-①", "報酬・料金等の支払調書作成事務", 7),
    ("NP_CATEGORY3", "2-②", "国民年金第3号被保険者届出事務", 2),
    (
        "PAYEE_REAL_ESTATE",
        "2-③",
        "不動産の使用料等の支払調書作成事務",
        7,
    ),
    (
        "ENTRUSTED_EI_ACQUISITION",
        "3-(1)①",
        "雇用保険被保険者資格取得届作成事務",
        4,
    ),
    (
        "ENTRUSTED_EI_CHANGE_LOSS",
        "3-(1)②",
        "雇用保険被保険者氏名変更・喪失届作成事務",
        4,
    ),
    (
        "ENTRUSTED_EI_NUMBER_REG",
        "3-(2)①",
        "雇用保険個人番号登録・変更届出書作成事務",
        4,
    ),
    (
        "ENTRUSTED_EI_NUMBER_REG_LIST",
        "3-(2)②",
        "同（連記式）作成事務",
        4,
    ),
    (
        "ENTRUSTED_OTHER",
        "3-(3)",
        "その他の労働保険の申請・届出・報告等に関する事務",
        3,
    ),
];

impl Default for PurposeCatalogue {
    fn default() -> Self {
        let purposes = DEFAULTS
            .iter()
            .map(|(code, article, label, years)| Purpose {
                code: (*code).to_owned(),
                article: (*article).to_owned(),
                label_ja: (*label).to_owned(),
                retention_years: *years,
            })
            .collect();
        PurposeCatalogue::from_purposes(purposes).unwrap_or_else(|_| unreachable_catalogue())
    }
}

// The built-in table is checked by a unit test; this exists only to avoid a panic path.
fn unreachable_catalogue() -> PurposeCatalogue {
    PurposeCatalogue {
        by_code: BTreeMap::new(),
    }
}

impl PurposeCatalogue {
    /// Loads a catalogue from a TOML file, replacing the defaults entirely.
    pub fn load(path: &Path) -> Result<PurposeCatalogue, PurposeError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PurposeError::Read {
            path: display.clone(),
            source,
        })?;
        let file: CatalogueFile = toml::from_str(&text).map_err(|e| PurposeError::Invalid {
            path: display.clone(),
            message: e.to_string(),
        })?;
        PurposeCatalogue::from_purposes(file.purpose).map_err(|message| PurposeError::Invalid {
            path: display,
            message,
        })
    }

    fn from_purposes(purposes: Vec<Purpose>) -> Result<PurposeCatalogue, String> {
        if purposes.is_empty() {
            return Err("the catalogue has no purpose".into());
        }
        let mut by_code = BTreeMap::new();
        for purpose in purposes {
            if !is_valid_code(&purpose.code) {
                return Err(format!(
                    "purpose code {:?} must be 1-64 characters of A-Z, 0-9 and _",
                    purpose.code
                ));
            }
            if purpose.retention_years > 100 {
                return Err(format!(
                    "purpose {}: retention_years over 100",
                    purpose.code
                ));
            }
            let code = purpose.code.clone();
            if by_code.insert(code.clone(), purpose).is_some() {
                return Err(format!("purpose code {code} appears twice"));
            }
        }
        Ok(PurposeCatalogue { by_code })
    }

    /// The purpose with this code, if the catalogue has it.
    pub fn get(&self, code: &str) -> Option<&Purpose> {
        self.by_code.get(code)
    }

    /// Every purpose, ordered by code.
    pub fn iter(&self) -> impl Iterator<Item = &Purpose> {
        self.by_code.values()
    }

    /// Validates a list of purpose codes: non-empty, every code known; returns them sorted and
    /// without duplicates (the canonical form bound into a record's associated data).
    pub fn canonical_list(&self, codes: &[String]) -> Result<Vec<String>, CodeError> {
        if codes.is_empty() {
            return Err(CodeError::Missing);
        }
        let mut list = Vec::with_capacity(codes.len());
        for code in codes {
            self.check(code)?;
            list.push(code.clone());
        }
        list.sort();
        list.dedup();
        Ok(list)
    }

    /// Checks one code is in the catalogue.
    pub fn check(&self, code: &str) -> Result<(), CodeError> {
        if self.by_code.contains_key(code) {
            Ok(())
        } else if is_valid_code(code) {
            Err(CodeError::Unknown(code.to_owned()))
        } else {
            Err(CodeError::Malformed)
        }
    }
}

/// Why a purpose code (or list of them) given in a call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// No purpose given where at least one is needed.
    #[error("at least one purpose is required")]
    Missing,
    /// Not of the form a code has.
    #[error("purpose code must be 1-64 characters of A-Z, 0-9 and _")]
    Malformed,
    /// Well formed, but not in the catalogue.
    #[error("unknown purpose code {0}")]
    Unknown(String),
}

fn is_valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalogue_is_the_article_4_list() {
        let catalogue = PurposeCatalogue::default();
        assert_eq!(catalogue.iter().count(), 12);
        let withholding = catalogue.get("STAFF_WITHHOLDING").expect("present");
        assert_eq!(withholding.article, "1-④");
        assert_eq!(withholding.retention_years, 7);
    }

    #[test]
    fn canonical_list_sorts_dedups_and_rejects_unknown() {
        let catalogue = PurposeCatalogue::default();
        let list = catalogue
            .canonical_list(&[
                "STAFF_WITHHOLDING".into(),
                "STAFF_HEALTH_PENSION".into(),
                "STAFF_WITHHOLDING".into(),
            ])
            .expect("valid");
        assert_eq!(list, vec!["STAFF_HEALTH_PENSION", "STAFF_WITHHOLDING"]);
        assert!(catalogue.canonical_list(&[]).is_err());
        assert_eq!(
            catalogue.canonical_list(&["MARKETING".into()]),
            Err(CodeError::Unknown("MARKETING".into()))
        );
        assert!(catalogue.check("drop table").is_err());
    }

    #[test]
    fn loads_from_file_and_rejects_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("purposes.toml");
        std::fs::write(
            &path,
            "[[purpose]]\ncode = \"STAFF_WITHHOLDING\"\narticle = \"1-④\"\nlabel_ja = \"源泉徴収票\"\nretention_years = 7\n",
        )
        .expect("write");
        let catalogue = PurposeCatalogue::load(&path).expect("load");
        assert_eq!(catalogue.iter().count(), 1);
        std::fs::write(&path, "[[purpose]]\ncode = \"lower\"\narticle = \"x\"\nlabel_ja = \"x\"\nretention_years = 1\n").expect("write");
        assert!(matches!(
            PurposeCatalogue::load(&path),
            Err(PurposeError::Invalid { .. })
        ));
        std::fs::write(&path, "not toml at all [").expect("write");
        assert!(matches!(
            PurposeCatalogue::load(&path),
            Err(PurposeError::Invalid { .. })
        ));
    }
}
