//! How the console says things to people: times in Japan's local time, and the daemon's wire
//! words (roles, request kinds, states, outcomes) in plain Japanese.

/// `ms` since the epoch as `2026年12月07日 21:05:00` in Japan (JST, UTC+9 all year); empty for
/// 0 (never).
pub fn jst_ms(ms: i64) -> String {
    if ms == 0 {
        return String::new();
    }
    let Some(at) = vault_client::pdf::jst_at(ms) else {
        return String::new();
    };
    format!(
        "{:04}年{:02}月{:02}日 {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// `unix` seconds as [`jst_ms`] does.
pub fn jst(unix: i64) -> String {
    jst_ms(unix.saturating_mul(1000))
}

/// A role as the handling rules name it.
pub fn role_ja(role: &str) -> String {
    match role {
        "admin" => "特定個人情報管理責任者（admin）".into(),
        "manager" => "事務取扱責任者（manager）".into(),
        "handler" => "事務取扱担当者（handler）".into(),
        "service" => "業務システム（service）".into(),
        "auditor" => "監査責任者（auditor）".into(),
        other => other.into(),
    }
}

/// The wire name of a role number.
pub fn role_name(role: i32) -> String {
    vault_client::pb::Role::try_from(role)
        .map(|r| {
            r.as_str_name()
                .trim_start_matches("ROLE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// What a change request asks for, in words.
pub fn kind_ja(kind: &str) -> String {
    match kind {
        "create_operator" => "操作者の登録".into(),
        "enable_operator" => "操作者の再有効化".into(),
        "grant" => "利用目的の付与".into(),
        "issue_token" => "トークンの発行（2分割）".into(),
        "set_quorum" => "承認人数の変更".into(),
        other => other.into(),
    }
}

/// An audit entry's outcome.
pub fn outcome_ja(outcome: &str) -> String {
    match outcome {
        "ALLOWED" => "許可".into(),
        "DENIED" => "拒否".into(),
        "FAILED" => "失敗".into(),
        "ABANDONED" => "中断（適用なし）".into(),
        "UNDELIVERED" => "未達".into(),
        other => other.into(),
    }
}

/// A change request's or key destruction's state.
pub fn state_ja(state: &str) -> String {
    match state {
        "pending" => "承認待ち".into(),
        "applied" => "適用済み".into(),
        "approved" => "承認済み".into(),
        "denied" => "却下".into(),
        "expired" => "期限切れ".into(),
        "cancelled" => "取消し".into(),
        "done" => "実施済み".into(),
        "active" => "使用中".into(),
        "decrypt-only" => "復号のみ".into(),
        "scheduled-for-destruction" => "破棄予定".into(),
        "destroyed" => "破棄済み".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_japans_and_never_is_empty() {
        // 2026-12-07T12:00:00Z is 21:00 in Japan.
        assert_eq!(jst(1_796_644_800), "2026年12月07日 21:00:00");
        assert_eq!(jst(0), "");
    }

    #[test]
    fn roles_and_kinds_read_as_the_rules_name_them() {
        assert_eq!(role_name(vault_client::pb::Role::Auditor as i32), "auditor");
        assert!(role_ja("admin").starts_with("特定個人情報管理責任者"));
        assert_eq!(kind_ja("issue_token"), "トークンの発行（2分割）");
        assert_eq!(state_ja("pending"), "承認待ち");
    }
}
