/// A UTC calendar date and time of day, computed from seconds since 1970 with Howard
/// Hinnant's `civil_from_days` (proleptic Gregorian, exact for every `Int64` day count
/// the seconds can give), so the services need neither Foundation nor the C library's
/// time zone state.
struct CivilDate: Equatable {
    var year: Int64
    /// 1 to 12.
    var month: Int
    /// 1 to 31.
    var day: Int
    /// 0 (Sunday) to 6 (Saturday).
    var weekday: Int
    var hour: Int
    var minute: Int
    var second: Int

    init(secondsSince1970 seconds: Int64) {
        let (days, secondOfDay) = Self.floorDivide(seconds, 86_400)
        hour = Int(secondOfDay / 3600)
        minute = Int(secondOfDay / 60 % 60)
        second = Int(secondOfDay % 60)
        // 1970-01-01 was a Thursday.
        weekday = Int(Self.floorDivide(days + 4, 7).remainder)
        // Shift the epoch to 0000-03-01 so that leap days end each 400-year era.
        let shifted = days + 719_468
        let era = Self.floorDivide(shifted, 146_097).quotient
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        day = Int(dayOfYear - (153 * monthIndex + 2) / 5 + 1)
        month = Int(monthIndex < 10 ? monthIndex + 3 : monthIndex - 9)
        year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
    }

    /// Division rounding toward negative infinity, with a remainder that is never negative.
    private static func floorDivide(_ value: Int64, _ divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        var quotient = value / divisor
        var remainder = value % divisor
        if remainder < 0 {
            quotient -= 1
            remainder += divisor
        }
        return (quotient, remainder)
    }
}
