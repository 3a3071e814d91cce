//! Pinot's dialect rewritten into DataFusion's, on the parsed SQL:
//! - aggregate spellings: `DISTINCTCOUNT(x)` → `COUNT(DISTINCT x)`, `DISTINCTCOUNTHLLPLUS(x)` →
//!   `approx_distinct(x)`, `PERCENTILEEST(x, p)` / `PERCENTILEESTp(x)` →
//!   `approx_percentile_cont(x, p / 100)`, `PERCENTILEp(x)` → `PERCENTILE(x, p)`,
//!   `LASTWITHTIME(v, t, 'type')` → `last_value(v ORDER BY t)`, `FIRSTWITHTIME(v, t, 'type')` →
//!   `first_value(v ORDER BY t)`;
//! - `SUBSTR(...)` and `SUBSTRING(...)`, which the SQL parser reads as its own syntax and
//!   DataFusion would plan with its 1-based `substr`, become calls of Pinot's functions of those
//!   names (`shoal-functions`): SUBSTR is 0-based with an exclusive end;
//! - predicates on multi-value columns match a row when one of its values matches, as in Pinot
//!   (pinot-core BaseDictionaryBasedPredicateEvaluator.applyMV): `tags = 'x'`, `<`, `<=`, `>`,
//!   `>=`, `BETWEEN`, `IN`, `LIKE`, `REGEXP_LIKE(tags, 'r')` become `mv_match(tags, op, ...)`;
//!   the exclusive ones, `!=`/`<>` and `NOT IN`, hold when no value matches (every value
//!   differs): `NOT mv_match(...)`. `NOT BETWEEN` and `NOT LIKE` are the NOT of the inclusive
//!   predicate, as Pinot plans them.

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, ObjectNamePart, OrderByExpr, OrderByOptions,
    Statement, UnaryOperator, Value, visit_expressions_mut, visit_relations_mut,
};
use shoal_functions::MV_MATCH;
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

/// Table and column names matched without regard to case, as Pinot does by default: every
/// unquoted identifier that names a known table or column (in any case) is replaced by the
/// name as it is spelled in the schema. `names` maps lowercase names to their spelling.
pub fn canonicalize(statement: &mut Statement, names: &HashMap<String, String>) {
    let fix = |ident: &mut Ident| {
        if ident.quote_style.is_none()
            && let Some(exact) = names.get(&ident.value.to_lowercase())
        {
            ident.value = exact.clone();
        }
    };
    let _ = visit_relations_mut(statement, |name| {
        for part in &mut name.0 {
            if let ObjectNamePart::Identifier(ident) = part {
                fix(ident);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_expressions_mut(statement, |expr| {
        match expr {
            Expr::Identifier(ident) => fix(ident),
            Expr::CompoundIdentifier(parts) => parts.iter_mut().for_each(fix),
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Rewrites Pinot's dialect in `statement`. `multi_value` holds the lowercase names of the
/// multi-value columns. An error says what Shoal cannot honour (a function argument it would
/// otherwise drop).
pub fn rewrite(statement: &mut Statement, multi_value: &HashSet<String>) -> Result<(), String> {
    let flow = visit_expressions_mut(statement, |expr| {
        if let Expr::Function(f) = expr
            && let Err(e) = rewrite_function(f)
        {
            return ControlFlow::Break(e);
        }
        if let Some(call) = substring_call(expr) {
            *expr = call;
        }
        if let Some(matched) = multi_value_predicate(expr, multi_value) {
            *expr = matched;
        }
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn unnamed(e: Expr) -> FunctionArg {
    FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(unnamed).collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

fn text(s: &str) -> Expr {
    Expr::Value(Value::SingleQuotedString(s.to_string()).into())
}

/// `SUBSTR(s, a[, b])` → Pinot's `substr(s, a[, b])`; `SUBSTRING(s, a[, n])` and
/// `SUBSTRING(s FROM a FOR n)` → Pinot's `substring(s, a[, n])` (1 when FROM is left out).
fn substring_call(expr: &Expr) -> Option<Expr> {
    let Expr::Substring { expr: s, substring_from, substring_for, shorthand, .. } = expr else {
        return None;
    };
    let from = substring_from.as_deref().cloned().unwrap_or_else(|| number("1"));
    let mut args = vec![(**s).clone(), from];
    args.extend(substring_for.as_deref().cloned());
    Some(call(if *shorthand { "substr" } else { "substring" }, args))
}

/// The multi-value column `e` names, if it names one.
fn is_multi_value(e: &Expr, multi_value: &HashSet<String>) -> bool {
    let name = match e {
        Expr::Identifier(id) => &id.value,
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(id) => &id.value,
            None => return false,
        },
        Expr::Nested(inner) => return is_multi_value(inner, multi_value),
        _ => return false,
    };
    multi_value.contains(&name.to_lowercase())
}

/// A predicate on a multi-value column, as an `mv_match` call (negated for the exclusive ones).
fn multi_value_predicate(expr: &Expr, multi_value: &HashSet<String>) -> Option<Expr> {
    let mv = |e: &Expr| is_multi_value(e, multi_value);
    let not = |e: Expr| Expr::UnaryOp { op: UnaryOperator::Not, expr: Box::new(e) };
    let matched = |column: &Expr, op: &str, rest: Vec<Expr>| {
        let mut args = vec![column.clone(), text(op)];
        args.extend(rest);
        call(MV_MATCH, args)
    };
    Some(match expr {
        Expr::BinaryOp { left, op, right } if mv(left) != mv(right) => {
            let (column, value, op) =
                if mv(left) { (left, right, op.clone()) } else { (right, left, flip(op)) };
            let inclusive = |name: &str| matched(column, name, vec![(**value).clone()]);
            match op {
                BinaryOperator::Eq => inclusive("="),
                BinaryOperator::NotEq => not(inclusive("=")),
                BinaryOperator::Lt => inclusive("<"),
                BinaryOperator::LtEq => inclusive("<="),
                BinaryOperator::Gt => inclusive(">"),
                BinaryOperator::GtEq => inclusive(">="),
                _ => return None,
            }
        }
        Expr::InList { expr: column, list, negated } if mv(column) => {
            let m = matched(column, "in", list.clone());
            if *negated { not(m) } else { m }
        }
        Expr::Between { expr: column, negated, low, high } if mv(column) => {
            let m = matched(column, "between", vec![(**low).clone(), (**high).clone()]);
            if *negated { not(m) } else { m }
        }
        Expr::Like { negated, any: false, expr: column, pattern, escape_char: None } if mv(column) => {
            let m = matched(column, "like", vec![(**pattern).clone()]);
            if *negated { not(m) } else { m }
        }
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("REGEXP_LIKE") => {
            let FunctionArguments::List(list) = &f.args else { return None };
            let [column, pattern] = list.args.as_slice() else { return None };
            let (Some(column), Some(pattern)) = (arg_expr(column), arg_expr(pattern)) else { return None };
            if !mv(column) {
                return None;
            }
            matched(column, "regexp_like", vec![pattern.clone()])
        }
        _ => return None,
    })
}

fn flip(op: &BinaryOperator) -> BinaryOperator {
    match op {
        BinaryOperator::Lt => BinaryOperator::Gt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        other => other.clone(),
    }
}

fn set_name(f: &mut Function, name: &str) {
    f.name = ObjectName::from(vec![Ident::new(name)]);
}

fn args(f: &mut Function) -> Option<&mut Vec<FunctionArg>> {
    match &mut f.args {
        FunctionArguments::List(list) => Some(&mut list.args),
        _ => None,
    }
}

fn arg_expr(arg: &FunctionArg) -> Option<&Expr> {
    match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
        FunctionArg::Named { arg: FunctionArgExpr::Expr(e), .. } => Some(e),
        _ => None,
    }
}

fn number(text: &str) -> Expr {
    Expr::Value(Value::Number(text.to_string(), false).into())
}

/// `p` (0..100) as a fraction expression `p / 100.0`.
fn fraction(p: Expr) -> FunctionArg {
    FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::BinaryOp {
        left: Box::new(Expr::Nested(Box::new(p))),
        op: datafusion::sql::sqlparser::ast::BinaryOperator::Divide,
        right: Box::new(number("100.0")),
    }))
}

fn rewrite_function(f: &mut Function) -> Result<(), String> {
    let name = f.name.to_string().to_ascii_uppercase();
    match name.as_str() {
        "DISTINCTCOUNT" => {
            set_name(f, "count");
            if let FunctionArguments::List(list) = &mut f.args {
                list.duplicate_treatment = Some(DuplicateTreatment::Distinct);
            }
        }
        // DISTINCTCOUNTHLL is shoal-functions' own, with its log2m. HLLPLUS's default sketch
        // (HyperLogLogPlus, p 14) is DataFusion's approx_distinct's size; its other arguments,
        // and SMARTHLL's parameters, would be dropped: refused.
        "DISTINCTCOUNTHLLPLUS" | "DISTINCTCOUNTSMARTHLL" => {
            if args(f).is_some_and(|a| a.len() > 1) {
                return Err(format!(
                    "{name} takes one argument in Shoal (its sketch parameters are not supported); \
                     DISTINCTCOUNTHLL(x, log2m) takes a precision"
                ));
            }
            set_name(f, "approx_distinct");
        }
        "PERCENTILEEST" | "PERCENTILETDIGEST" => {
            set_name(f, "approx_percentile_cont");
            if let Some(a) = args(f)
                && a.len() == 2
                && let Some(p) = arg_expr(&a[1]).cloned()
            {
                a[1] = fraction(p);
            }
        }
        "LASTWITHTIME" | "FIRSTWITHTIME" => {
            set_name(f, if name == "LASTWITHTIME" { "last_value" } else { "first_value" });
            if let FunctionArguments::List(list) = &mut f.args
                && list.args.len() >= 2
                && let Some(time) = arg_expr(&list.args[1]).cloned()
            {
                list.args.truncate(1);
                list.clauses.push(FunctionArgumentClause::OrderBy(vec![OrderByExpr {
                    expr: time,
                    options: OrderByOptions { asc: Some(true), nulls_first: Some(true) },
                    with_fill: None,
                }]));
            }
        }
        _ => {
            // PERCENTILE95(x) and PERCENTILEEST95(x): the percentile in the name, digits only
            // (pinot-core AggregationFunctionFactory.java: `\d+`), so that no NaN, inf or
            // exponent reaches the SQL.
            for (prefix, target) in [
                ("PERCENTILEEST", "approx_percentile_cont"),
                ("PERCENTILETDIGEST", "approx_percentile_cont"),
                ("PERCENTILE", "percentile"),
            ] {
                if let Some(p) = name
                    .strip_prefix(prefix)
                    .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                {
                    let p = p.to_string();
                    set_name(f, target);
                    if let Some(a) = args(f)
                        && a.len() == 1
                    {
                        if target == "percentile" {
                            a.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(number(&p))));
                        } else {
                            a.push(fraction(number(&p)));
                        }
                    }
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::{DFParser, Statement as DfStatement};

    fn rewritten(sql: &str) -> String {
        let mut statements = DFParser::parse_sql(sql).unwrap();
        let DfStatement::Statement(s) = &mut statements[0] else { panic!() };
        let mv = HashSet::from(["tags".to_string()]);
        rewrite(s, &mv).unwrap();
        s.to_string()
    }

    #[test]
    fn pinot_spellings_become_datafusion_ones() {
        assert_eq!(rewritten("SELECT DISTINCTCOUNT(a) FROM t"), "SELECT count(DISTINCT a) FROM t");
        assert_eq!(
            rewritten("SELECT distinctCountHLL(a, 12) FROM t"),
            "SELECT distinctCountHLL(a, 12) FROM t"
        );
        assert_eq!(rewritten("SELECT distinctCountHLLPlus(a) FROM t"), "SELECT approx_distinct(a) FROM t");
        assert_eq!(
            rewritten("SELECT PERCENTILEEST(a, 90) FROM t"),
            "SELECT approx_percentile_cont(a, (90) / 100.0) FROM t"
        );
        assert_eq!(rewritten("SELECT percentile95(a) FROM t"), "SELECT percentile(a, 95) FROM t");
        for name in ["PERCENTILENAN", "PERCENTILEINF", "PERCENTILE1E2", "PERCENTILEESTNAN"] {
            assert_eq!(rewritten(&format!("SELECT {name}(a) FROM t")), format!("SELECT {name}(a) FROM t"));
        }
        assert_eq!(
            rewritten("SELECT LASTWITHTIME(v, ts, 'STRING') FROM t"),
            "SELECT last_value(v ORDER BY ts ASC NULLS FIRST) FROM t"
        );
    }

    #[test]
    fn substrings_call_pinot_functions() {
        assert_eq!(rewritten("SELECT SUBSTR(s, 1, 3) FROM t"), "SELECT substr(s, 1, 3) FROM t");
        assert_eq!(rewritten("SELECT substr(s, 2) FROM t"), "SELECT substr(s, 2) FROM t");
        assert_eq!(rewritten("SELECT SUBSTRING(s, 2, 3) FROM t"), "SELECT substring(s, 2, 3) FROM t");
        assert_eq!(rewritten("SELECT SUBSTRING(s FROM 2 FOR 3) FROM t"), "SELECT substring(s, 2, 3) FROM t");
        assert_eq!(rewritten("SELECT SUBSTRING(s FOR 3) FROM t"), "SELECT substring(s, 1, 3) FROM t");
    }

    #[test]
    fn multi_value_predicates_match_any_value() {
        let cases = [
            ("tags = 'x'", "mv_match(tags, '=', 'x')"),
            ("'x' = TAGS", "mv_match(TAGS, '=', 'x')"),
            ("t.tags <> 'x'", "NOT mv_match(t.tags, '=', 'x')"),
            ("tags != 'x'", "NOT mv_match(tags, '=', 'x')"),
            ("tags IN ('x', 'y')", "mv_match(tags, 'in', 'x', 'y')"),
            ("tags NOT IN ('x', 'y')", "NOT mv_match(tags, 'in', 'x', 'y')"),
            ("3 < tags", "mv_match(tags, '>', 3)"),
            ("tags BETWEEN 'a' AND 'c'", "mv_match(tags, 'between', 'a', 'c')"),
            ("tags LIKE 'a%'", "mv_match(tags, 'like', 'a%')"),
            ("REGEXP_LIKE(tags, '^a')", "mv_match(tags, 'regexp_like', '^a')"),
            ("name = 'x'", "name = 'x'"),
        ];
        for (predicate, want) in cases {
            assert_eq!(
                rewritten(&format!("SELECT 1 FROM t WHERE {predicate}")),
                format!("SELECT 1 FROM t WHERE {want}"),
                "{predicate}"
            );
        }
    }
}
