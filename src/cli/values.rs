//! Whole-number option values: a value that is negative, out of range or no number at all gets one
//! line that says the range the option takes (a usage error, exit 2), never the parser's own
//! "invalid digit found in string".

/// `s` as a whole number in `min..=max` (`max` `None`: no bound but the type's).
pub fn whole<T: TryFrom<u64>>(s: &str, min: u64, max: Option<u64>) -> Result<T, String> {
    let range = match max {
        Some(max) => format!("{min}..={max}"),
        None => format!("{min}.. (a whole number, {min} or more)"),
    };
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{s}' is not a whole number in {range}"));
    }
    // Digits only: a failed parse is a number too large for any option.
    let in_range = s.parse::<i128>().ok().filter(|&n| n >= i128::from(min) && max.is_none_or(|m| n <= i128::from(m)));
    in_range.and_then(|n| u64::try_from(n).ok()).and_then(|n| T::try_from(n).ok()).ok_or_else(|| format!("{s} is not in {range}"))
}

/// The most threads (`--threads`) or workers (`--jobs`) taken: 4 × the cores available, and the
/// cores. More only contend for the cores, and thousands cannot all be spawned.
pub fn thread_cap() -> (usize, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (4 * cores, cores)
}

/// The line for a thread count out of range.
pub fn threads_out_of_range(option: &str, value: &str) -> String {
    let (cap, cores) = thread_cap();
    format!("{option} {value} is out of range: 1 to {cap} (4 × the {cores} cores available)")
}

/// A thread or worker count for `option`: 1 to [`thread_cap`].
pub fn threads<T: TryFrom<u64>>(option: &str, s: &str) -> Result<T, String> {
    whole(s, 1, Some(thread_cap().0 as u64)).map_err(|_| threads_out_of_range(option, s))
}

/// A whole number, 1 or more (counts of things that cannot be none: `-k`, `--pool`, `--threads`).
pub fn at_least_one<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    whole(s, 1, None)
}

/// A whole number, 0 or more (`--hold`).
pub fn at_least_zero<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    whole(s, 0, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_value_says_the_range() {
        assert_eq!(whole::<u64>("7", 1, Some(10)), Ok(7));
        assert_eq!(whole::<u64>("+7", 1, Some(10)), Ok(7));
        assert_eq!(whole::<usize>("0", 0, None), Ok(0));
        assert_eq!(whole::<u64>("-3", 1, None), Err("-3 is not in 1.. (a whole number, 1 or more)".into()));
        assert_eq!(whole::<u64>("0", 1, Some(10)), Err("0 is not in 1..=10".into()));
        assert_eq!(whole::<u64>("11", 1, Some(10)), Err("11 is not in 1..=10".into()));
        let huge = "99999999999999999999999999999999999999999";
        assert_eq!(whole::<u64>(huge, 1, None), Err(format!("{huge} is not in 1.. (a whole number, 1 or more)")));
        // Larger than the type can hold, with no bound given: still out of range, not a panic.
        assert_eq!(whole::<u32>("4294967296", 0, None), Err("4294967296 is not in 0.. (a whole number, 0 or more)".into()));
        for bad in ["", "-", "2.5", "x", "1e3", " 3"] {
            assert_eq!(whole::<u64>(bad, 1, Some(4)), Err(format!("'{bad}' is not a whole number in 1..=4")), "{bad:?}");
        }
    }
}
