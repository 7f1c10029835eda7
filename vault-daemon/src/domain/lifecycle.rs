//! The end of a record's life in calendar terms: the day the person left (退職日), the day each
//! purpose's legal retention ends, the disposal date (the latest of those), and the monthly
//! disposal epoch whose key is destroyed once all of that month's records are gone; and a use
//! stopped at the person's request (規程第49条), which a retirement carries along.
//!
//! Dates are calendar days in Japan (JST, UTC+9 all year): a record due on a day becomes due at
//! 00:00 JST that day, never earlier.

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, UtcOffset};

use crate::domain::purpose::PurposeCatalogue;

const JST_OFFSET_SECS: i32 = 9 * 3600;

/// A date that is not `YYYY-MM-DD` or not a real day.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field} must be a date as YYYY-MM-DD")]
pub struct BadDate {
    /// The field that was wrong.
    pub field: &'static str,
}

/// Why and by whom a record's use was stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// Stated reason.
    pub reason: String,
    /// Manager who suspended it.
    pub by: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// A retired record: the person left; the number is kept for the purposes whose retention runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    /// The day the relationship ended, `YYYY-MM-DD`.
    pub left_on: String,
    /// The day the record is disposed of, `YYYY-MM-DD`: `left_on` plus the longest retention
    /// among its purposes.
    pub dispose_on: String,
    /// Who recorded the retirement.
    pub by: String,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// Set while the record's use is also suspended (規程第49条).
    pub suspension: Option<Suspension>,
}

/// A tenant's key for the records due in one month. Retired records are rewrapped under it;
/// once the month is over and all of them are disposed of, it is destroyed in the backend, so
/// no copy of the store taken earlier can reveal them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochKey {
    /// Tenant id.
    pub tenant: String,
    /// Its first month ([`epoch_of`]); records under it name this as their key version.
    pub epoch: u32,
    /// How many months it covers (`[lifecycle] epoch_months` when it was made).
    pub months: u32,
    /// Backend reference of the key-encryption key.
    pub kek: Vec<u8>,
    /// When it was created, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// When it was destroyed, if it was.
    pub destroyed_at_ms: Option<i64>,
}

/// A retired record waiting for its disposal date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisposalQueueEntry {
    /// Disposal date, `YYYY-MM-DD`.
    pub dispose_on: String,
    /// The record.
    pub handle: String,
    /// Its tenant.
    pub tenant: String,
    /// The epoch whose key wraps it.
    pub epoch: u32,
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(field: &'static str, text: &str) -> Result<Date, BadDate> {
    let bad = || BadDate { field };
    let mut parts = text.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month: u8 = m.parse().map_err(|_| bad())?;
    let day: u8 = d.parse().map_err(|_| bad())?;
    let month = Month::try_from(month).map_err(|_| bad())?;
    Date::from_calendar_date(year, month, day).map_err(|_| bad())
}

/// `YYYY-MM-DD`.
pub fn format_date(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// `date` plus `years` calendar years; 29 February becomes 28 February in a common year.
pub fn add_years(date: Date, years: u32) -> Date {
    let year = date.year()
        + i32::try_from(years)
            .unwrap_or(i32::MAX - 10_000)
            .min(10_000);
    Date::from_calendar_date(year, date.month(), date.day())
        .or_else(|_| Date::from_calendar_date(year, date.month(), 28))
        .unwrap_or(Date::MAX)
}

/// Today's date in Japan at `now_ms`.
pub fn jst_today(now_ms: i64) -> Date {
    let offset = UtcOffset::from_whole_seconds(JST_OFFSET_SECS).unwrap_or(UtcOffset::UTC);
    OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset)
        .date()
}

/// The first individual numbers were notified in October 2015: no number was acquired before.
pub const FIRST_ACQUISITION: Date = match Date::from_calendar_date(2015, time::Month::October, 5) {
    Ok(date) => date,
    Err(_) => Date::MIN,
};

/// 00:00 JST of `date`, in milliseconds since the Unix epoch.
pub fn jst_midnight_ms(date: Date) -> i64 {
    let offset = UtcOffset::from_whole_seconds(JST_OFFSET_SECS).unwrap_or(UtcOffset::UTC);
    date.midnight().assume_offset(offset).unix_timestamp() * 1000
}

/// `2027-01-05 12:00 JST` for `ms` since the Unix epoch: how a person in the office reads a
/// time.
pub fn jst_time(ms: i64) -> String {
    let offset = UtcOffset::from_whole_seconds(JST_OFFSET_SECS).unwrap_or(UtcOffset::UTC);
    let at = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} JST",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// The last day a purpose's retention covers: the retention ends the day before
/// `left_on + retention_years`.
pub fn retention_end(left_on: Date, retention_years: u32) -> Date {
    add_years(left_on, retention_years)
}

/// The disposal date of a record that left on `left_on`: the longest retention among its
/// purposes (unknown purposes count as the longest in the catalogue, to err on keeping).
pub fn disposal_date(left_on: Date, purposes: &[String], catalogue: &PurposeCatalogue) -> Date {
    let longest_known = catalogue
        .iter()
        .map(|p| p.retention_years)
        .max()
        .unwrap_or(0);
    let years = purposes
        .iter()
        .map(|code| {
            catalogue
                .get(code)
                .map_or(longest_known, |p| p.retention_years)
        })
        .max()
        .unwrap_or(longest_known);
    retention_end(left_on, years)
}

/// A disposal epoch: the month a record is due, as `year × 12 + month − 1`.
pub fn epoch_of(date: Date) -> u32 {
    u32::try_from(date.year()).unwrap_or(0) * 12 + u32::from(u8::from(date.month())) - 1
}

/// `YYYY-MM` of an epoch.
pub fn epoch_label(epoch: u32) -> String {
    format!("{:04}-{:02}", epoch / 12, epoch % 12 + 1)
}

/// The first month of the `months`-long epoch holding month `month` (epochs are aligned on the
/// calendar year: 1, 2, 3, 4, 6 or 12 months).
pub fn epoch_start(month: u32, months: u32) -> u32 {
    month - month % months.max(1)
}

/// Whether `months` is a length epochs can have.
pub fn valid_epoch_months(months: u32) -> bool {
    matches!(months, 1 | 2 | 3 | 4 | 6 | 12)
}

/// Whether every day of the epoch starting at `epoch` and `months` long is before `today`.
pub fn epoch_is_over(epoch: u32, months: u32, today: Date) -> bool {
    epoch + months.max(1) <= epoch_of(today)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_strictly() {
        assert!(parse_date("d", "2026-02-28").is_ok());
        for bad in [
            "2026-02-30",
            "2026-2-28",
            "26-02-28",
            "2026/02/28",
            "",
            "2026-02-28-1",
        ] {
            assert!(parse_date("d", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn leap_day_plus_years_lands_on_the_28th() {
        let leap = parse_date("d", "2028-02-29").expect("date");
        assert_eq!(format_date(add_years(leap, 7)), "2035-02-28");
        assert_eq!(format_date(add_years(leap, 4)), "2032-02-29");
    }

    #[test]
    fn disposal_takes_the_longest_retention() {
        let catalogue = PurposeCatalogue::default();
        let left = parse_date("d", "2026-03-31").expect("date");
        let date = disposal_date(
            left,
            &["STAFF_HEALTH_PENSION".into(), "STAFF_WITHHOLDING".into()],
            &catalogue,
        );
        assert_eq!(format_date(date), "2033-03-31"); // 7 years (withholding) beats 2
        let date = disposal_date(left, &["STAFF_HEALTH_PENSION".into()], &catalogue);
        assert_eq!(format_date(date), "2028-03-31");
    }

    #[test]
    fn times_read_in_japan() {
        // 2026-03-30T15:00:00Z.
        assert_eq!(jst_time(1_774_882_800_000), "2026-03-31 00:00 JST");
    }

    #[test]
    fn jst_day_starts_at_15_utc() {
        // 2026-03-30T15:00:00Z is 2026-03-31 00:00 JST.
        let ms = 1_774_882_800_000;
        assert_eq!(format_date(jst_today(ms)), "2026-03-31");
        assert_eq!(format_date(jst_today(ms - 1)), "2026-03-30");
    }

    #[test]
    fn epochs_are_months() {
        let date = parse_date("d", "2033-03-31").expect("date");
        assert_eq!(epoch_label(epoch_of(date)), "2033-03");
        assert!(epoch_is_over(
            epoch_of(date),
            1,
            parse_date("d", "2033-04-01").expect("d")
        ));
        assert!(!epoch_is_over(epoch_of(date), 1, date));
        // A year-long epoch: 2033-01 to 2033-12, over on 2034-01-01.
        let year = epoch_start(epoch_of(date), 12);
        assert_eq!(epoch_label(year), "2033-01");
        assert!(!epoch_is_over(
            year,
            12,
            parse_date("d", "2033-12-31").expect("d")
        ));
        assert!(epoch_is_over(
            year,
            12,
            parse_date("d", "2034-01-01").expect("d")
        ));
        assert_eq!(
            epoch_start(epoch_of(date), 3),
            epoch_of(parse_date("d", "2033-01-01").expect("d"))
        );
    }
}
