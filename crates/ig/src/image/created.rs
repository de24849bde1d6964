//! The `org.opencontainers.image.created` value: RFC 3339 in UTC, taken
//! from `SOURCE_DATE_EPOCH` when set so that rebuilding the same sources
//! gives the same image digests.
//!
//! Pure: the caller reads the environment and passes the value in, which
//! keeps this module free of hidden inputs and testable.

use std::time::{SystemTime, UNIX_EPOCH};

use super::error::ImageError;

/// The creation timestamp for a new image. `source_date_epoch` is the value
/// of `SOURCE_DATE_EPOCH` if the caller found one: an integer number of
/// seconds since 1970. `None` (or an empty string, which reproducible-build
/// tools treat as unset) means "now".
pub fn created_timestamp(source_date_epoch: Option<&str>) -> Result<String, ImageError> {
    let secs = match source_date_epoch.map(str::trim) {
        Some(v) if !v.is_empty() => {
            v.parse::<i64>()
                .map_err(|_| ImageError::InvalidSourceDateEpoch {
                    value: v.to_owned(),
                })?
        }
        _ => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    };
    Ok(format_rfc3339_utc(secs))
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), by
/// counting 400-year eras that start on March 1st (Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339_utc(1_744_905_934), "2025-04-17T16:05:34Z");
        assert_eq!(format_rfc3339_utc(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn source_date_epoch() {
        assert_eq!(
            created_timestamp(Some("1700000000")).unwrap(),
            "2023-11-14T22:13:20Z"
        );
        assert!(matches!(
            created_timestamp(Some("yesterday")),
            Err(ImageError::InvalidSourceDateEpoch { .. })
        ));
        let now = created_timestamp(None).unwrap();
        assert_eq!(now.len(), "2025-04-17T16:05:34Z".len());
        assert_eq!(created_timestamp(Some("")).unwrap().len(), now.len());
    }
}
