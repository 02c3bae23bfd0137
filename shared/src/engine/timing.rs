//! Local-time rules: quiet hours in the customer's time zone, DST included.

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::flow::QuietHours;

pub fn in_quiet_hours(quiet: QuietHours, tz: Tz, at: DateTime<Utc>) -> bool {
    let local = at.with_timezone(&tz).time();
    if quiet.start <= quiet.end {
        local >= quiet.start && local < quiet.end
    } else {
        local >= quiet.start || local < quiet.end
    }
}

/// The first instant at or after `at` whose local time is `quiet.end`.
pub fn next_quiet_end(quiet: QuietHours, tz: Tz, at: DateTime<Utc>) -> DateTime<Utc> {
    let local = at.with_timezone(&tz);
    let mut date = local.date_naive();
    if local.time() >= quiet.end {
        date = date.succ_opt().unwrap_or(date);
    }
    resolve_local(tz, date.and_time(quiet.end))
}

/// A local wall-clock time as an instant: the earlier of two in a DST fold, and the time
/// just after the gap when it does not exist (a spring-forward skip).
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = local;
    for _ in 0..4 {
        if let Some(at) = tz.from_local_datetime(&probe).earliest() {
            return at.with_timezone(&Utc);
        }
        probe += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;

    fn quiet() -> QuietHours {
        QuietHours { start: NaiveTime::from_hms_opt(21, 0, 0).unwrap(), end: NaiveTime::from_hms_opt(9, 0, 0).unwrap() }
    }
    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn tokyo_night_moves_to_nine() {
        let tz = chrono_tz::Asia::Tokyo;
        // 23:30 JST
        assert!(in_quiet_hours(quiet(), tz, utc("2026-11-20T14:30:00Z")));
        assert_eq!(next_quiet_end(quiet(), tz, utc("2026-11-20T14:30:00Z")), utc("2026-11-21T00:00:00Z"));
        // 03:00 JST: same day's 09:00
        assert_eq!(next_quiet_end(quiet(), tz, utc("2026-11-20T18:00:00Z")), utc("2026-11-21T00:00:00Z"));
        // 21:00 sharp is quiet, 09:00 sharp is not
        assert!(in_quiet_hours(quiet(), tz, utc("2026-11-20T12:00:00Z")));
        assert!(!in_quiet_hours(quiet(), tz, utc("2026-11-21T00:00:00Z")));
    }

    #[test]
    fn dst_in_new_york() {
        let tz = chrono_tz::America::New_York;
        // 2026-03-08 02:00 EST -> 03:00 EDT. 23:00 EST on the 7th -> 09:00 EDT on the 8th = 13:00Z.
        assert_eq!(next_quiet_end(quiet(), tz, utc("2026-03-08T04:00:00Z")), utc("2026-03-08T13:00:00Z"));
        // A wall time in the gap resolves just after it.
        let gap = chrono::NaiveDate::from_ymd_opt(2026, 3, 8).unwrap().and_hms_opt(2, 30, 0).unwrap();
        assert_eq!(resolve_local(tz, gap), utc("2026-03-08T07:00:00Z"));
    }
}

/// `date` moved into `year`: 29 February becomes 28 February in other years.
pub fn in_year(date: chrono::NaiveDate, year: i32) -> Option<chrono::NaiveDate> {
    use chrono::Datelike;
    chrono::NaiveDate::from_ymd_opt(year, date.month(), date.day()).or_else(|| chrono::NaiveDate::from_ymd_opt(year, date.month(), date.day() - 1))
}

/// The first yearly occurrence of `date`'s month and day at local `at` that is after `after`,
/// and no earlier than `from_years` years after `date` itself.
pub fn next_yearly(tz: Tz, date: chrono::NaiveDate, at: chrono::NaiveTime, from_years: i32, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    use chrono::Datelike;
    let first_year = date.year() + from_years;
    let start = first_year.max(after.with_timezone(&tz).year() - 1);
    (start..start + 6).filter_map(|year| in_year(date, year)).map(|day| resolve_local(tz, day.and_time(at))).find(|t| *t > after)
}

#[cfg(test)]
mod yearly_tests {
    use super::*;
    use chrono::{NaiveDate, NaiveTime};

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn leap_day_birthdays_fall_on_the_28th() {
        let tz = chrono_tz::Asia::Tokyo;
        let born = NaiveDate::from_ymd_opt(1992, 2, 29).unwrap();
        let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        assert_eq!(next_yearly(tz, born, nine, 0, utc("2026-11-20T00:00:00Z")), Some(utc("2027-02-28T00:00:00Z")));
        assert_eq!(next_yearly(tz, born, nine, 0, utc("2027-03-01T00:00:00Z")), Some(utc("2028-02-29T00:00:00Z")));
    }

    #[test]
    fn anniversaries_start_a_year_after() {
        let tz = chrono_tz::Asia::Tokyo;
        let first = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let ten = NaiveTime::from_hms_opt(10, 0, 0).unwrap();
        // Ordered at 08:00 that day: not 10:00 the same day, but a year later.
        assert_eq!(next_yearly(tz, first, ten, 1, utc("2026-11-19T23:00:00Z")), Some(utc("2027-11-20T01:00:00Z")));
    }
}
