#!/usr/bin/env bash
# A month's report for a simulated store of 3,000 customers, with an A/B test on the welcome
# offer (10 % coupon vs free shipping). Writes examples/report-demo.txt and .html.
#   bash examples/report-demo.sh
# The flows are a copy of flows/ with one change: the welcome flow splits 50/50 between the
# shipped offer and a free-shipping variant. Recipient behaviour is `simulate --engagement`'s
# seeded model, so the numbers are the model's, not a forecast.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p aftercare-cli
aftercare=target/release/aftercare
cp -r flows "$work/flows"
cat > "$work/flows/welcome.yaml" <<'YAML'
id: welcome
description: "A day after registering, a welcome offer (A/B: 10% coupon vs free shipping); three weeks later a follow-up. Ends at the first order."
category: marketing
promotional: true
trigger:
  event: customer_registered
key: customer
goals:
  - { event: order_placed }
steps:
  - { id: wait_1d, wait: 1d }
  - { id: ab, split: [{variant: a, weight: 50, goto: offer}, {variant: b, weight: 50, goto: offer_b}] }
  - { id: offer, send: welcome_offer }
  - { id: to_wait, goto: wait_21d }
  - { id: offer_b, send: welcome_offer_shipping }
  - { id: wait_21d, wait: 21d }
  - { id: followup, send: welcome_followup }
YAML
sed 's/^subject: .*/subject: "送料無料で初めてのご注文を"/' flows/templates/ja/welcome_offer.mjml > "$work/flows/templates/ja/welcome_offer_shipping.mjml"
sed 's/^subject: .*/subject: "Free shipping on your first order"/' flows/templates/en/welcome_offer.mjml > "$work/flows/templates/en/welcome_offer_shipping.mjml"
"$aftercare" validate --flows "$work/flows"
"$aftercare" generate --customers 3000 --start 2025-11-01T00:00:00Z --without-opens > "$work/events.jsonl"
run() {
  "$aftercare" simulate --events "$work/events.jsonl" --flows "$work/flows" --until 2026-09-01T00:00:00Z \
    --engagement --seed 7 --report --from 2026-08-01 --to 2026-08-31 "$@"
}
run --format table --out examples/report-demo.txt > /dev/null
run --format html --out examples/report-demo.html > /dev/null
cat examples/report-demo.txt
echo "HTML: examples/report-demo.html"
