import Testing

/// Every ReactorBench suite runs inside this one, one test at a time: the honesty tests
/// measure time, and a load test running beside them would disturb what they measure.
@Suite(.serialized) struct BenchTests {}
