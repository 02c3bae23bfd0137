// The Lambdas compile flows/ in (feature `bundled-flows`): rebuild when it changes.
fn main() {
    println!("cargo:rerun-if-changed=../flows");
}
