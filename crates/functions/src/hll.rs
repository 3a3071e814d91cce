//! `DISTINCTCOUNTHLL(x[, log2m])`: Pinot's HyperLogLog distinct count (pinot-core
//! `DistinctCountHLLAggregationFunction.java`), with the sketch Pinot uses, stream-lib's
//! `com.clearspring.analytics.stream.cardinality.HyperLogLog`: 2^log2m registers (log2m 8
//! unless given, pinot-spi `CommonConstants.Helix.DEFAULT_HYPERLOGLOG_LOG2M`), values hashed
//! with stream-lib's `MurmurHash.hash(Object)` (MurmurHash2, 32 bits: integers and floating-point
//! bits through `hashLong`, text through its UTF-8 bytes with seed -1), and its `cardinality()`:
//! linear counting while the raw estimate is at most 2.5 m, the large-range correction past
//! 2^32 / 30. Same values, same log2m, same estimate as Pinot. The result is LONG.

use crate::literal_args::int_literal;
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Field, FieldRef, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::common::{Result, ScalarValue, internal_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, GroupsAccumulator, Signature, TypeSignature, Volatility,
};
use std::sync::Arc;

/// DataFusion's `approx_distinct` (DISTINCTCOUNTHLLPLUS and DISTINCTCOUNTSMARTHLL are
/// rewritten to it), taking a dictionary-encoded column as the values it holds: DataFusion's own
/// refuses a dictionary.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ApproxDistinct {
    inner: Arc<datafusion::logical_expr::AggregateUDF>,
    signature: Signature,
}

impl ApproxDistinct {
    pub(crate) fn new() -> ApproxDistinct {
        ApproxDistinct {
            inner: datafusion::functions_aggregate::approx_distinct::approx_distinct_udaf(),
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for ApproxDistinct {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 1 {
            return plan_err!("approx_distinct takes one argument, got {}", arg_types.len());
        }
        Ok(crate::without_dictionaries(arg_types))
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner.default_value(data_type)
    }
    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.accumulator(args)
    }
    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }
    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        self.inner.create_groups_accumulator(args)
    }
    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }
}

/// Pinot's default log2m.
const DEFAULT_LOG2M: i64 = 8;
/// The largest log2m taken: 2^20 registers, 1 MiB a group. stream-lib takes up to 30 (1 GiB a
/// group), which one query's GROUP BY could multiply past any memory; asking for more is an
/// error, never a smaller sketch.
const MAX_LOG2M: i64 = 20;

/// The DISTINCTCOUNTHLL aggregation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct DistinctCountHll {
    signature: Signature,
}

impl DistinctCountHll {
    pub(crate) fn new() -> DistinctCountHll {
        DistinctCountHll {
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Immutable,
            ),
        }
    }
}

impl AggregateUDFImpl for DistinctCountHll {
    fn name(&self) -> &str {
        "distinctcounthll"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let log2m = int_literal(&args, 1, "DISTINCTCOUNTHLL", 1..=MAX_LOG2M)?.unwrap_or(DEFAULT_LOG2M) as u32;
        Ok(Box::new(HyperLogLog::new(log2m)))
    }
    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new("registers", DataType::Binary, true))])
    }
    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(0)))
    }
}

/// stream-lib's `MurmurHash.hashLong`.
pub(crate) fn hash_long(data: i64) -> i32 {
    let m: i32 = 0x5bd1_e995;
    let r = 24;
    let mut h: i32 = 0;
    let mut k = (data as i32).wrapping_mul(m);
    k ^= ((k as u32) >> r) as i32;
    h ^= k.wrapping_mul(m);
    k = ((data >> 32) as i32).wrapping_mul(m);
    k ^= ((k as u32) >> r) as i32;
    h = h.wrapping_mul(m);
    h ^= k.wrapping_mul(m);
    h ^= ((h as u32) >> 13) as i32;
    h = h.wrapping_mul(m);
    h ^= ((h as u32) >> 15) as i32;
    h
}

/// stream-lib's `MurmurHash.hash(byte[], length, seed)` (MurmurHash2), with Java's signed bytes.
pub(crate) fn hash_bytes(data: &[u8], seed: i32) -> i32 {
    let m: i32 = 0x5bd1_e995;
    let r = 24;
    let length = data.len();
    let mut h = seed ^ (length as i32);
    let byte = |i: usize| i32::from(data[i] as i8);
    for i in 0..length / 4 {
        let at = i * 4;
        let mut k = byte(at + 3);
        k = (k << 8) | (byte(at + 2) & 0xff);
        k = (k << 8) | (byte(at + 1) & 0xff);
        k = (k << 8) | (byte(at) & 0xff);
        k = k.wrapping_mul(m);
        k ^= ((k as u32) >> r) as i32;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let left = length % 4;
    if left != 0 {
        if left >= 3 {
            h ^= byte(length - 3) << 16;
        }
        if left >= 2 {
            h ^= byte(length - 2) << 8;
        }
        h ^= byte(length - 1);
        h = h.wrapping_mul(m);
    }
    h ^= ((h as u32) >> 13) as i32;
    h = h.wrapping_mul(m);
    h ^= ((h as u32) >> 15) as i32;
    h
}

/// stream-lib's HyperLogLog, registers one byte each.
#[derive(Debug)]
pub(crate) struct HyperLogLog {
    log2m: u32,
    registers: Vec<u8>,
}

impl HyperLogLog {
    pub(crate) fn new(log2m: u32) -> HyperLogLog {
        HyperLogLog { log2m, registers: vec![0; 1 << log2m] }
    }

    /// `offerHashed(int)`.
    pub(crate) fn offer_hashed(&mut self, hash: i32) {
        let hash = hash as u32;
        let j = (hash >> (32 - self.log2m)) as usize;
        // Java: numberOfLeadingZeros((hash << log2m) | (1 << (log2m - 1)) + 1) + 1, where `+`
        // binds before `|`.
        let w = (hash << self.log2m) | ((1u32 << (self.log2m - 1)) + 1);
        let r = (w.leading_zeros() + 1) as u8;
        if self.registers[j] < r {
            self.registers[j] = r;
        }
    }

    /// `cardinality()`.
    pub(crate) fn cardinality(&self) -> i64 {
        let m = self.registers.len() as f64;
        let mut sum = 0.0;
        let mut zeros = 0.0;
        for &r in &self.registers {
            sum += 1.0 / f64::from(1u32 << r.min(31));
            if r == 0 {
                zeros += 1.0;
            }
        }
        let alpha_mm = match self.log2m {
            4 => 0.673 * m * m,
            5 => 0.697 * m * m,
            6 => 0.709 * m * m,
            _ => (0.7213 / (1.0 + 1.079 / m)) * m * m,
        };
        let estimate = alpha_mm / sum;
        let pow_2_32 = 4_294_967_296.0_f64;
        if estimate <= 2.5 * m {
            // Linear counting, m ln(m / zeros). stream-lib divides by zero when no register is
            // empty (Long.MAX_VALUE); the raw estimate is the honest answer there.
            if zeros == 0.0 { estimate.round() as i64 } else { (m * (m / zeros).ln()).round() as i64 }
        } else if estimate > pow_2_32 / 30.0 {
            (-pow_2_32 * (1.0 - estimate / pow_2_32).ln()).round() as i64
        } else {
            estimate.round() as i64
        }
    }

    fn merge(&mut self, registers: &[u8]) -> Result<()> {
        if registers.len() != self.registers.len() {
            return internal_err!("DISTINCTCOUNTHLL: partial sketches of different sizes");
        }
        for (mine, theirs) in self.registers.iter_mut().zip(registers) {
            *mine = (*mine).max(*theirs);
        }
        Ok(())
    }
}

impl Accumulator for HyperLogLog {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(v) = values.first() else { return plan_err!("DISTINCTCOUNTHLL: no values") };
        // MurmurHash.hash(Object): Integer and Long through hashLong of the value, Float and
        // Double of their raw bits, String and byte[] through hash(bytes) with seed -1.
        macro_rules! ints {
            ($t:ty) => {
                for x in v.as_primitive::<$t>().iter().flatten() {
                    self.offer_hashed(hash_long(x as i64));
                }
            };
        }
        match v.data_type() {
            DataType::Int8 => ints!(Int8Type),
            DataType::Int16 => ints!(Int16Type),
            DataType::Int32 => ints!(Int32Type),
            DataType::Int64 => ints!(Int64Type),
            DataType::UInt8 => ints!(UInt8Type),
            DataType::UInt16 => ints!(UInt16Type),
            DataType::UInt32 => ints!(UInt32Type),
            DataType::UInt64 => ints!(UInt64Type),
            DataType::Float32 => {
                for x in v.as_primitive::<Float32Type>().iter().flatten() {
                    self.offer_hashed(hash_long(i64::from(x.to_bits() as i32)));
                }
            }
            DataType::Float64 => {
                for x in v.as_primitive::<Float64Type>().iter().flatten() {
                    self.offer_hashed(hash_long(x.to_bits() as i64));
                }
            }
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                let v = arrow::compute::cast(v, &DataType::Binary)?;
                for x in v.as_binary::<i32>().iter().flatten() {
                    self.offer_hashed(hash_bytes(x, -1));
                }
            }
            DataType::Null => {}
            _ => {
                // Text, and anything else as Pinot would: through its string form.
                let v = arrow::compute::cast(v, &DataType::Utf8)?;
                for x in v.as_string::<i32>().iter().flatten() {
                    self.offer_hashed(hash_bytes(x.as_bytes(), -1));
                }
            }
        }
        Ok(())
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.cardinality())))
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.registers.capacity()
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.registers.clone()))])
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(sketches) = states.first().and_then(|s| s.as_binary_opt::<i32>()) else {
            return internal_err!("DISTINCTCOUNTHLL: unexpected partial state {states:?}");
        };
        for registers in sketches.iter().flatten() {
            self.merge(registers)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur_hash2_matches_the_reference() {
        // Austin Appleby's reference MurmurHash2 (its C code, run apart from Shoal): "" seed 0
        // → 0, "hello" seed 0 → 0xe56129cb, "abcd" seed 0 → 0x26873021. stream-lib's Java
        // port XORs a two- or three-byte tail in the other order, with Java's signed bytes: a
        // Python port of that Java gives "hello world" seed -1 → 0x751799bb (the C code:
        // 0x63609208) and "héllo wörld" → 0x6133acb0.
        assert_eq!(hash_bytes(b"", 0), 0);
        assert_eq!(hash_bytes(b"hello", 0) as u32, 0xe561_29cb);
        assert_eq!(hash_bytes(b"abcd", 0) as u32, 0x2687_3021);
        assert_eq!(hash_bytes(b"hello world", -1) as u32, 0x7517_99bb);
        assert_eq!(hash_bytes("héllo wörld".as_bytes(), -1) as u32, 0x6133_acb0);
    }

    #[test]
    fn a_few_distinct_values_count_exactly() {
        // Linear counting on m registers with n values in n of them: m ln(m / (m - n)), which
        // rounds to n while n is small next to m (256 ln(256/252) = 4.03).
        for log2m in [8, 12] {
            let mut hll = HyperLogLog::new(log2m);
            for v in [1i64, 2, 3, 2, 1, 5] {
                hll.offer_hashed(hash_long(v));
            }
            assert_eq!(hll.cardinality(), 4, "log2m {log2m}");
            let mut text = HyperLogLog::new(log2m);
            for v in ["a", "b", "a", "c"] {
                text.offer_hashed(hash_bytes(v.as_bytes(), -1));
            }
            assert_eq!(text.cardinality(), 3, "log2m {log2m}");
        }
    }

    #[test]
    fn the_error_shrinks_as_log2m_grows() {
        // HyperLogLog's standard error is 1.04 / sqrt(m): 6.5% at log2m 8, 1.6% at 12.
        let n = 100_000;
        let error = |log2m| {
            let mut hll = HyperLogLog::new(log2m);
            for v in 0..n {
                hll.offer_hashed(hash_long(v));
            }
            (hll.cardinality() - n).abs() as f64 / n as f64
        };
        assert!(error(8) < 0.065 * 3.0, "{}", error(8));
        assert!(error(12) < 0.0163 * 3.0, "{}", error(12));
    }
}
