//! A native evaluator for the plain flow expressions: variables, attributes and subscripts,
//! integer and string literals, `and` / `or` / `not`, comparisons, `in`, integer `+ - * %`,
//! the tests `none` / `defined` / `undefined` and the filters `default`, `length`, `list` and
//! `selectattr("path")`, which is what every default flow's expressions are made of. Anything
//! outside the subset is left to minijinja.
//!
//! Why: every `email_opened` evaluates `engagement_coupon`'s trigger filter, and every order
//! `usage_guide`'s and `replenishment`'s `selectattr`s; running them on minijinja's machine (a
//! `State` with its context and frames, per evaluation) cost about 2,400 of an open's 29,200
//! instructions and 10,300 of an order's 155,100 (BENCHMARKS.md, items 66 and 67). The syntax
//! is minijinja's, parsed with its precedence, and constants are folded as it folds them. Every
//! operation is minijinja's own on its `Value`s (`get_attr`, `get_item`, `==`, `<`, `is_true`,
//! `len`) or the same integer arithmetic. Variables are asked for one at a time, and
//! `customer.x` as that one attribute, so the engine builds neither a context nor the whole
//! `customer` (item 69). Wherever minijinja would do something this does not (an error, a
//! float, a kind of value it does not handle), evaluation stops with `None` and the caller asks
//! minijinja. A property test compares the two on random expressions and values.

use minijinja::value::ValueKind;
use minijinja::Value;

use super::expression::{attr_of, Reads, Var, Variables};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Native {
    Const(Value),
    Var(Var),
    Attr(Box<Native>, Box<str>),
    Item(Box<Native>, Box<Native>),
    Not(Box<Native>),
    And(Box<Native>, Box<Native>),
    Or(Box<Native>, Box<Native>),
    Compare(Compare, Box<Native>, Box<Native>),
    /// `needle in haystack`.
    In(Box<Native>, Box<Native>),
    Math(Math, Box<Native>, Box<Native>),
    Test(Test, Box<Native>),
    /// `value | default(other, lax)`.
    Default(Box<Native>, Option<Box<Native>>, Option<Box<Native>>),
    Length(Box<Native>),
    /// `value | selectattr("path")`: the items whose attribute at `path` is true.
    SelectAttr(Box<Native>, Box<[Box<str>]>),
    /// `value | list`.
    List(Box<Native>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compare {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Math {
    Add,
    Sub,
    Mul,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Test {
    None,
    Defined,
    Undefined,
}

impl Native {
    /// The expression in the subset this evaluates, or `None` (minijinja evaluates it).
    pub(crate) fn compile(source: &str) -> Option<Native> {
        let tokens = lex(source)?;
        let mut parser = Parser { tokens: &tokens, at: 0, depth: 0 };
        let native = parser.or()?;
        if parser.at != tokens.len() {
            return None;
        }
        native.fold()
    }

    /// minijinja folds an operation on constants into a constant when it compiles, and for
    /// `and` its folded value is not its evaluated one: `"" and 1` folds to `false`, where
    /// evaluated it gives `""`. So the same folds happen here, bottom up, as its `as_const`
    /// does them; `None` when one of them is not this evaluator's to compute (`true + true`).
    fn fold(self) -> Option<Native> {
        let is_constant = |n: &Native| matches!(n, Native::Const(_));
        let fold = |n: Box<Native>| n.fold().map(Box::new);
        let fold_given = |n: Option<Box<Native>>| match n {
            Some(n) => fold(n).map(Some),
            None => Some(None),
        };
        let folded = match self {
            Native::Not(value) => Native::Not(fold(value)?),
            Native::And(left, right) => Native::And(fold(left)?, fold(right)?),
            Native::Or(left, right) => Native::Or(fold(left)?, fold(right)?),
            Native::Compare(op, left, right) => Native::Compare(op, fold(left)?, fold(right)?),
            Native::In(needle, haystack) => Native::In(fold(needle)?, fold(haystack)?),
            Native::Math(op, left, right) => Native::Math(op, fold(left)?, fold(right)?),
            Native::Attr(base, name) => Native::Attr(fold(base)?, name),
            Native::Item(base, key) => Native::Item(fold(base)?, fold(key)?),
            Native::Test(test, value) => Native::Test(test, fold(value)?),
            Native::Default(value, other, lax) => Native::Default(fold(value)?, fold_given(other)?, fold_given(lax)?),
            Native::Length(value) => Native::Length(fold(value)?),
            Native::SelectAttr(value, path) => Native::SelectAttr(fold(value)?, path),
            Native::List(value) => Native::List(fold(value)?),
            leaf @ (Native::Const(_) | Native::Var(_)) => return Some(leaf),
        };
        Some(match &folded {
            Native::And(left, right) => match (&**left, &**right) {
                (Native::Const(left), Native::Const(right)) => Native::Const(if left.is_true() && right.is_true() { right.clone() } else { Value::from(false) }),
                _ => folded,
            },
            // The others fold to what they evaluate to, with no variable left to read.
            Native::Not(value) if is_constant(value) => Native::Const(folded.eval(&Value::UNDEFINED, &Reads::everything())?),
            Native::Or(a, b) | Native::Compare(_, a, b) | Native::In(a, b) | Native::Math(_, a, b) if is_constant(a) && is_constant(b) => {
                Native::Const(folded.eval(&Value::UNDEFINED, &Reads::everything())?)
            }
            _ => folded,
        })
    }

    /// The value minijinja would give, or `None` where this leaves it to minijinja.
    pub(crate) fn eval(&self, context: &(impl Variables + ?Sized), reads: &Reads) -> Option<Value> {
        Some(match self {
            Native::Const(value) => value.clone(),
            Native::Var(var) => context.var(*var, reads)?,
            // A variable's attribute is asked for as one: `customer.opens_30d` builds no other.
            Native::Attr(base, name) => match &**base {
                Native::Var(var) => context.attr(*var, name, reads)?,
                base => attr_of(base.eval(context, reads)?, name)?,
            },
            Native::Item(base, key) => {
                let base = defined(base.eval(context, reads)?)?;
                base.get_item(&key.eval(context, reads)?).ok()?
            }
            Native::Not(value) => Value::from(!value.eval(context, reads)?.is_true()),
            Native::And(left, right) => {
                let left = left.eval(context, reads)?;
                if left.is_true() {
                    right.eval(context, reads)?
                } else {
                    left
                }
            }
            Native::Or(left, right) => {
                let left = left.eval(context, reads)?;
                if left.is_true() {
                    left
                } else {
                    right.eval(context, reads)?
                }
            }
            Native::Compare(op, left, right) => {
                let (a, b) = (left.eval(context, reads)?, right.eval(context, reads)?);
                Value::from(match op {
                    Compare::Eq => a == b,
                    Compare::Ne => a != b,
                    Compare::Lt => a < b,
                    Compare::Lte => a <= b,
                    Compare::Gt => a > b,
                    Compare::Gte => a >= b,
                })
            }
            Native::In(needle, haystack) => {
                let (needle, haystack) = (needle.eval(context, reads)?, haystack.eval(context, reads)?);
                Value::from(contains(&haystack, &needle)?)
            }
            Native::Math(op, left, right) => {
                let (a, b) = (integer(&left.eval(context, reads)?)?, integer(&right.eval(context, reads)?)?);
                let result = match op {
                    Math::Add => a.checked_add(b),
                    Math::Sub => a.checked_sub(b),
                    Math::Mul => a.checked_mul(b),
                    Math::Rem => a.checked_rem_euclid(b),
                }?;
                // minijinja keeps a result that fits in an i64 as one, and a wider one as i128.
                Value::from(i64::try_from(result).ok()?)
            }
            Native::Test(test, value) => {
                let value = value.eval(context, reads)?;
                Value::from(match test {
                    Test::None => value.is_none(),
                    Test::Defined => !value.is_undefined(),
                    Test::Undefined => value.is_undefined(),
                })
            }
            Native::Default(value, other, lax) => {
                let value = value.eval(context, reads)?;
                let other = match other {
                    Some(other) => other.eval(context, reads)?,
                    None => Value::from(""),
                };
                let lax = match lax {
                    Some(lax) => lax.eval(context, reads)?.is_true(),
                    None => false,
                };
                if value.is_undefined() || (lax && !value.is_true()) {
                    other
                } else {
                    value
                }
            }
            Native::Length(value) => Value::from(value.eval(context, reads)?.len()?),
            Native::SelectAttr(value, path) => {
                let mut selected = Vec::new();
                for item in items(&value.eval(context, reads)?)? {
                    let mut tested = item.clone();
                    for name in path.iter() {
                        tested = tested.get_attr(name).ok()?;
                    }
                    if tested.is_true() {
                        selected.push(item);
                    }
                }
                Value::from(selected)
            }
            Native::List(value) => Value::from(items(&value.eval(context, reads)?)?),
        })
    }
}

/// A template that is text and `{{ expression }}`s in the subset, and nothing else of
/// minijinja's syntax: most subjects (`Thanks for your order ({{ order.number or order.id }})`).
/// Rendered here it builds no context and runs no machine: the subject was about a twelfth of
/// an order's ingest (BENCHMARKS.md, item 71).
#[derive(Debug, Clone)]
pub struct NativeTemplate(Box<[Piece]>);

#[derive(Debug, Clone)]
enum Piece {
    Text(Box<str>),
    Print(Native),
}

impl NativeTemplate {
    /// The template, or `None` where minijinja is to render it: a tag or comment, whitespace
    /// control, a trailing newline (which it drops), an expression outside the subset.
    pub fn compile(source: &str) -> Option<NativeTemplate> {
        if source.contains("{%") || source.contains("{#") || source.ends_with('\n') {
            return None;
        }
        let mut pieces = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].into()));
            }
            let inside = &rest[start + 2..];
            let end = inside.find("}}")?;
            let expression = &inside[..end];
            if expression.starts_with(['-', '+']) || expression.ends_with(['-', '+']) {
                return None;
            }
            pieces.push(Piece::Print(Native::compile(expression)?));
            rest = &inside[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.into()));
        }
        Some(NativeTemplate(pieces.into()))
    }

    /// What minijinja renders without escaping, or `None` where this leaves it to minijinja.
    pub fn render(&self, variables: &(impl Variables + ?Sized), reads: &Reads) -> Option<String> {
        use std::fmt::Write as _;
        let mut out = String::new();
        for piece in self.0.iter() {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Print(native) => {
                    let value = native.eval(variables, reads)?;
                    // minijinja prints a value by its `Display` when it does not escape; only
                    // the plain kinds here (a map or list prints as minijinja's own syntax).
                    match value.kind() {
                        ValueKind::Undefined | ValueKind::None | ValueKind::Bool | ValueKind::Number | ValueKind::String => write!(out, "{value}").ok()?,
                        _ => return None,
                    }
                }
            }
        }
        Some(out)
    }
}

/// minijinja makes looking into an undefined value an error; that is left to it.
fn defined(value: Value) -> Option<Value> {
    (!value.is_undefined()).then_some(value)
}

/// What minijinja's filters iterate over, where that is plain: a list's items, and nothing for
/// undefined or none (a map's keys, a string's characters and the rest are left to it).
fn items(value: &Value) -> Option<Vec<Value>> {
    match value.kind() {
        ValueKind::Seq | ValueKind::Undefined | ValueKind::None => Some(value.try_iter().ok()?.collect()),
        _ => None,
    }
}

/// An integer as minijinja's arithmetic takes it (two integers are added as i128).
fn integer(value: &Value) -> Option<i128> {
    if !value.is_integer() {
        return None;
    }
    value.as_i64().map(i128::from)
}

/// minijinja's `in`, for the containers whose rule is plain: nothing is in undefined, a
/// string holds its substrings, a list its items.
fn contains(haystack: &Value, needle: &Value) -> Option<bool> {
    if haystack.is_undefined() {
        return Some(false);
    }
    if let Some(text) = haystack.as_str() {
        return Some(text.contains(needle.as_str()?));
    }
    match haystack.kind() {
        ValueKind::Seq => Some(haystack.try_iter().ok()?.any(|item| &item == needle)),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token<'a> {
    Ident(&'a str),
    Int(i64),
    Str(&'a str),
    Op(&'static str),
}

/// minijinja's tokens, as far as the subset needs them; `None` for anything else.
fn lex(source: &str) -> Option<Vec<Token<'_>>> {
    const OPS: [&str; 16] = ["==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "%", "(", ")", "[", "]", ".", "|"];
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let c = bytes[at];
        if c.is_ascii_whitespace() {
            at += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = at;
            while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
                at += 1;
            }
            tokens.push(Token::Ident(&source[start..at]));
        } else if c.is_ascii_digit() {
            let start = at;
            while at < bytes.len() && bytes[at].is_ascii_digit() {
                at += 1;
            }
            // Floats, `1_000`, `0x1f` and the like are minijinja's to read.
            if at < bytes.len() && (bytes[at].is_ascii_alphabetic() || matches!(bytes[at], b'_' | b'.')) {
                return None;
            }
            tokens.push(Token::Int(source[start..at].parse().ok()?));
        } else if c == b'\'' || c == b'"' {
            let end = at + 1 + source[at + 1..].find(c as char)?;
            let text = &source[at + 1..end];
            // Escapes, and adjacent strings (which minijinja joins), are its to read.
            if text.contains('\\') || matches!(tokens.last(), Some(Token::Str(_))) {
                return None;
            }
            tokens.push(Token::Str(text));
            at = end + 1;
        } else if c == b',' {
            tokens.push(Token::Op(","));
            at += 1;
        } else {
            let op = OPS.iter().find(|op| source[at..].starts_with(**op))?;
            // `**` (power) is minijinja's; `/`, `//`, `~`, `=` and the rest are not in `OPS`.
            if *op == "*" && source[at + 1..].starts_with('*') {
                return None;
            }
            tokens.push(Token::Op(op));
            at += op.len();
        }
    }
    Some(tokens)
}

/// Deeper than this is left to minijinja (which has its own limit).
const MAX_DEPTH: usize = 64;

/// minijinja's grammar (`compiler/parser.rs`), down to the subset: each rule returns `None`
/// where the source leaves it.
struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    at: usize,
    depth: usize,
}

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.at)
    }

    fn peek_is(&self, token: &Token<'_>) -> bool {
        self.peek() == Some(token)
    }

    fn skip(&mut self, token: &Token<'_>) -> bool {
        let found = self.peek_is(token);
        if found {
            self.at += 1;
        }
        found
    }

    fn nested<T>(&mut self, rule: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let result = rule(self);
        self.depth -= 1;
        result
    }

    fn or(&mut self) -> Option<Native> {
        self.nested(|p| {
            let mut left = p.and()?;
            while p.skip(&Token::Ident("or")) {
                left = Native::Or(Box::new(left), Box::new(p.and()?));
            }
            // `a if b else c` is minijinja's.
            (!p.peek_is(&Token::Ident("if"))).then_some(left)
        })
    }

    fn and(&mut self) -> Option<Native> {
        let mut left = self.not()?;
        while self.skip(&Token::Ident("and")) {
            left = Native::And(Box::new(left), Box::new(self.not()?));
        }
        Some(left)
    }

    fn not(&mut self) -> Option<Native> {
        if self.skip(&Token::Ident("not")) {
            return self.nested(|p| Some(Native::Not(Box::new(p.not()?))));
        }
        self.compare()
    }

    fn compare(&mut self) -> Option<Native> {
        let left = self.math1()?;
        let op = match self.peek() {
            Some(Token::Op("==")) => Compare::Eq,
            Some(Token::Op("!=")) => Compare::Ne,
            Some(Token::Op("<")) => Compare::Lt,
            Some(Token::Op("<=")) => Compare::Lte,
            Some(Token::Op(">")) => Compare::Gt,
            Some(Token::Op(">=")) => Compare::Gte,
            Some(Token::Ident("in")) => {
                self.at += 1;
                let haystack = self.math1()?;
                return self.single_comparison(Native::In(Box::new(left), Box::new(haystack)));
            }
            Some(Token::Ident("not")) => {
                self.at += 1;
                if !self.skip(&Token::Ident("in")) {
                    return None;
                }
                let haystack = self.math1()?;
                return self.single_comparison(Native::Not(Box::new(Native::In(Box::new(left), Box::new(haystack)))));
            }
            _ => return Some(left),
        };
        self.at += 1;
        let right = self.math1()?;
        self.single_comparison(Native::Compare(op, Box::new(left), Box::new(right)))
    }

    /// A chain (`a < b < c`) is minijinja's.
    fn single_comparison(&self, comparison: Native) -> Option<Native> {
        let chained = matches!(self.peek(), Some(Token::Op("==" | "!=" | "<" | "<=" | ">" | ">=") | Token::Ident("in" | "not")));
        (!chained).then_some(comparison)
    }

    fn math1(&mut self) -> Option<Native> {
        self.arithmetic(&[("+", Math::Add), ("-", Math::Sub)], Self::math2)
    }

    fn math2(&mut self) -> Option<Native> {
        self.arithmetic(&[("*", Math::Mul), ("%", Math::Rem)], Self::unary)
    }

    /// One level of left-associative arithmetic over the next, tighter one.
    fn arithmetic(&mut self, ops: &[(&str, Math)], next: fn(&mut Self) -> Option<Native>) -> Option<Native> {
        let mut left = next(self)?;
        loop {
            let Some(Token::Op(token)) = self.peek() else { return Some(left) };
            let Some(&(_, op)) = ops.iter().find(|(symbol, _)| symbol == token) else { return Some(left) };
            self.at += 1;
            left = Native::Math(op, Box::new(left), Box::new(next(self)?));
        }
    }

    /// A primary, its attributes and subscripts, then its filters and tests.
    fn unary(&mut self) -> Option<Native> {
        let mut value = self.primary()?;
        loop {
            if self.skip(&Token::Op(".")) {
                let Some(Token::Ident(name)) = self.peek() else { return None };
                value = Native::Attr(Box::new(value), (*name).into());
                self.at += 1;
            } else if self.skip(&Token::Op("[")) {
                let key = self.or()?;
                if !self.skip(&Token::Op("]")) {
                    return None;
                }
                value = Native::Item(Box::new(value), Box::new(key));
            } else if self.peek_is(&Token::Op("(")) {
                // A call is minijinja's.
                return None;
            } else {
                break;
            }
        }
        loop {
            if self.skip(&Token::Op("|")) {
                value = match self.peek() {
                    Some(Token::Ident("default")) => {
                        self.at += 1;
                        let mut args = if self.peek_is(&Token::Op("(")) { self.args()? } else { Vec::new() };
                        if args.len() > 2 {
                            return None;
                        }
                        let lax = (args.len() == 2).then(|| args.pop()).flatten().map(Box::new);
                        let other = args.pop().map(Box::new);
                        Native::Default(Box::new(value), other, lax)
                    }
                    Some(Token::Ident(name @ ("length" | "list"))) if !matches!(self.tokens.get(self.at + 1), Some(Token::Op("("))) => {
                        let name = *name;
                        self.at += 1;
                        if name == "length" { Native::Length(Box::new(value)) } else { Native::List(Box::new(value)) }
                    }
                    Some(Token::Ident("selectattr")) => {
                        self.at += 1;
                        // One attribute path, as a string: a test name after it is minijinja's,
                        // as is a path with an index in it (`items.0`).
                        let [Native::Const(path)] = &self.args()?[..] else { return None };
                        let path: Box<[Box<str>]> = path.as_str()?.split('.').map(Box::from).collect();
                        if path.iter().any(|name| name.parse::<usize>().is_ok()) {
                            return None;
                        }
                        Native::SelectAttr(Box::new(value), path)
                    }
                    _ => return None,
                };
            } else if self.skip(&Token::Ident("is")) {
                let negated = self.skip(&Token::Ident("not"));
                let test = match self.peek() {
                    Some(Token::Ident("none")) => Test::None,
                    Some(Token::Ident("defined")) => Test::Defined,
                    Some(Token::Ident("undefined")) => Test::Undefined,
                    _ => return None,
                };
                self.at += 1;
                // minijinja reads a test's argument without parentheses (`is divisibleby 3`):
                // only what cannot start one may follow.
                let follows_plainly = match self.peek() {
                    None => true,
                    Some(Token::Ident(word)) => matches!(*word, "and" | "or" | "is"),
                    Some(Token::Op(op)) => matches!(*op, ")" | "]" | "," | "==" | "!=" | "<" | "<=" | ">" | ">=" | "|" | "*" | "%"),
                    Some(Token::Int(_) | Token::Str(_)) => false,
                };
                if !follows_plainly {
                    return None;
                }
                let tested = Native::Test(test, Box::new(value));
                value = if negated { Native::Not(Box::new(tested)) } else { tested };
            } else {
                return Some(value);
            }
        }
    }

    /// `(a, b)`: positional arguments only.
    fn args(&mut self) -> Option<Vec<Native>> {
        if !self.skip(&Token::Op("(")) {
            return None;
        }
        let mut args = Vec::new();
        if self.skip(&Token::Op(")")) {
            return Some(args);
        }
        loop {
            args.push(self.or()?);
            if self.skip(&Token::Op(")")) {
                return Some(args);
            }
            if !self.skip(&Token::Op(",")) {
                return None;
            }
            // A trailing comma is minijinja's.
            if self.peek_is(&Token::Op(")")) {
                return None;
            }
        }
    }

    fn primary(&mut self) -> Option<Native> {
        let token = self.peek()?.clone();
        self.at += 1;
        Some(match token {
            Token::Ident("true" | "True") => Native::Const(Value::from(true)),
            Token::Ident("false" | "False") => Native::Const(Value::from(false)),
            Token::Ident("none" | "None") => Native::Const(Value::from(())),
            // Only the flow variables: any other name may be one of minijinja's globals.
            Token::Ident(name) => Native::Var(*Var::ALL.iter().find(|v| v.name() == name)?),
            Token::Int(value) => Native::Const(Value::from(value)),
            Token::Str(text) => Native::Const(Value::from(text)),
            Token::Op("(") => {
                let inner = self.nested(|p| p.or())?;
                // `(a, b)` is a tuple, minijinja's.
                if !self.skip(&Token::Op(")")) {
                    return None;
                }
                inner
            }
            Token::Op(_) => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn minijinja(source: &str, context: &Value) -> Result<Value, String> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        let expression = env.compile_expression(source).map_err(|e| e.to_string())?;
        expression.eval(context.clone()).map_err(|e| e.to_string())
    }

    /// Equal and of the same kind and form (`1` is not `1.0`, nor `true`).
    fn same(a: &Value, b: &Value) -> bool {
        a.kind() == b.kind() && format!("{a:?}") == format!("{b:?}")
    }

    fn context() -> Value {
        Value::from_serialize(serde_json::json!({
            "customer": {"orders_count": 5, "opens_30d": 3, "days_since_last_order": null, "first_order_id": "A1",
                         "days_since_sent": {"welcome": 40}, "sku_order_counts": {"BEAN-1": 2}, "email": "a@example.com"},
            "order": {"id": "A1", "items": [{"sku": "BEAN-1", "guide_url": "https://x"}, {"sku": "MUG"}], "total": 8600},
            "shipment": {"estimated_delivery": "2026-11-22"},
            "item": {"sku": "BEAN-1", "replenish_after_days": 30},
            "enrollment": {"opened": ["request"]},
            "vip_threshold": 50000,
            "order_total": 8600.5,
        }))
    }

    /// The default flows' filters and conditions are all in the subset, and give minijinja's values.
    #[test]
    fn the_default_flows_expressions_are_evaluated_natively_as_minijinja_does() {
        let context = context();
        let sources = [
            "customer.opens_30d >= 3\nand (customer.days_since_last_order | default(9999, true)) >= 30\nand (customer.days_since_sent.engagement_coupon | default(9999, true)) >= 90",
            "customer.orders_count % 5 == 0",
            "customer.sku_order_counts[item.sku] >= 2",
            "'request' not in enrollment.opened",
            "order.id == customer.first_order_id",
            "vip_threshold is not none and order_total is not none and order_total >= vip_threshold",
            "item.replenish_after_days - 5",
            "shipment.estimated_delivery",
            "order.items | length > 1",
            "not customer.email is defined or customer.days_since_sent['welcome'] * 2 != 80",
            "order[\"items\"] | selectattr(\"guide_url\") | list | length > 0",
            "order[\"items\"] | selectattr(\"replenish_after_days\") | list",
        ];
        for source in sources {
            let native = Native::compile(source).unwrap_or_else(|| panic!("{source:?} is in the subset"));
            let value = native.eval(&context, &Reads::everything()).unwrap_or_else(|| panic!("{source:?} evaluates natively"));
            let expected = minijinja(source, &context).unwrap();
            assert!(same(&value, &expected), "{source:?}: {value:?} against minijinja's {expected:?}");
        }
    }

    #[test]
    fn what_the_subset_does_not_cover_is_left_to_minijinja() {
        for source in [
            "order.items | selectattr('guide_url', 'defined')",
            "order.items | selectattr(customer.email)",
            "order.items | selectattr('a.0')",
            "order.items | select",
            "order.items | list(1)",
            "range(3)",
            "a if b else c",
            "1.5 > order_total",
            "customer.orders_count / 2",
            "customer.orders_count // 2",
            "2 ** 3",
            "'a' ~ 'b'",
            "customer.orders_count is divisibleby 3",
            "customer.email is none 'x'",
            "-customer.orders_count",
            "1 < 2 < 3",
            "order.items | default(1, 2, 3)",
            "[1, 2]",
            "{'a': 1}",
            "'a' 'b'",
            "'a\\'b'",
            "order.0",
            "unknown_name",
            "order.items | length(1)",
            "(1, 2)",
            "order.items | default(boolean=true)",
        ] {
            assert_eq!(Native::compile(source), None, "{source:?}");
        }
        // In the subset but not natively evaluable: looking into undefined, an `in` on a map,
        // a float in arithmetic, a remainder by zero.
        let context = context();
        for source in ["review.id", "'x' in customer", "order_total + 1", "customer.orders_count % 0", "'A' in customer.orders_count", "customer | list", "order.id | list", "order.items | selectattr('nope.x')"] {
            let native = Native::compile(source).unwrap_or_else(|| panic!("{source:?} is in the subset"));
            assert_eq!(native.eval(&context, &Reads::everything()), None, "{source:?}");
        }
    }

    /// minijinja folds `and` of constants to `false` where evaluating it gives the falsy
    /// operand; a fold this evaluator cannot compute leaves the whole expression to minijinja.
    #[test]
    fn constants_fold_as_minijinja_folds_them() {
        let context = context();
        for source in ["'' and 1", "\"\" and not none", "0 or ''", "not ''", "customer.orders_count and ('' and 1)", "1 + 2 == 3 and 'a' in 'cat'"] {
            let value = Native::compile(source).and_then(|n| n.eval(&context, &Reads::everything())).unwrap_or_else(|| panic!("{source:?} evaluates natively"));
            let expected = minijinja(source, &context).unwrap();
            assert!(same(&value, &expected), "{source:?}: {value:?} against minijinja's {expected:?}");
        }
        assert_eq!(Native::compile("'' and 1"), Some(Native::Const(Value::from(false))));
        assert_eq!(Native::compile("none and true + true"), None, "minijinja adds booleans when it folds");
    }

    /// Random expressions of the subset's pieces over random values: wherever the native
    /// evaluator answers, minijinja answers the same.
    fn expression() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("email".to_owned()),
            Just("customer".to_owned()),
            Just("order".to_owned()),
            Just("item".to_owned()),
            Just("none".to_owned()),
            Just("true".to_owned()),
            Just("False".to_owned()),
            (0i64..20).prop_map(|n| n.to_string()),
            Just("9223372036854775807".to_owned()),
            "[a-c]{0,2}".prop_map(|s| format!("'{s}'")),
            "[a-c]{0,2}".prop_map(|s| format!("\"{s}\"")),
        ];
        leaf.prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                (inner.clone(), "[a-d]").prop_map(|(e, name)| format!("{e}.{name}")),
                (inner.clone(), inner.clone()).prop_map(|(e, k)| format!("{e}[{k}]")),
                inner.clone().prop_map(|e| format!("not {e}")),
                inner.clone().prop_map(|e| format!("({e})")),
                (inner.clone(), prop_oneof![Just("and"), Just("or"), Just("=="), Just("!="), Just("<"), Just("<="), Just(">"), Just(">="), Just("in"), Just("not in"), Just("+"), Just("-"), Just("*"), Just("%")], inner.clone())
                    .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
                (inner.clone(), prop_oneof![Just("is none"), Just("is not none"), Just("is defined"), Just("is undefined"), Just("| length"), Just("| default"), Just("| default(1)"), Just("| list"), Just("| selectattr('a')"), Just("| selectattr('b.c')"), Just("| selectattr(\"a\") | list")])
                    .prop_map(|(e, f)| format!("{e} {f}")),
                (inner.clone(), inner.clone(), inner).prop_map(|(e, other, lax)| format!("{e} | default({other}, {lax})")),
            ]
        })
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            (-3i64..30).prop_map(serde_json::Value::from),
            Just(serde_json::Value::from(i64::MAX)),
            Just(serde_json::Value::from(2.5)),
            "[a-c]{0,2}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 20, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-d]", inner, 0..4).prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn the_native_evaluator_agrees_with_minijinja(source in expression(), email in json_value(), customer in json_value(), order in json_value(), item in json_value()) {
            let context = Value::from_serialize(serde_json::json!({"email": email, "customer": customer, "order": order, "item": item}));
            if let Some(native) = Native::compile(&source) {
                if let Some(value) = native.eval(&context, &Reads::everything()) {
                    match minijinja(&source, &context) {
                        Ok(expected) => prop_assert!(same(&value, &expected), "{}: native {:?}, minijinja {:?}", source, value, expected),
                        Err(error) => prop_assert!(false, "{}: native {:?}, minijinja failed: {}", source, value, error),
                    }
                }
            }
        }
    }
}
