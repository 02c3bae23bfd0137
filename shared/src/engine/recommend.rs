//! Products to recommend: never one the customer bought, nor one in the order at hand.

use std::collections::BTreeSet;

use crate::domain::{Event, LineItem, Profile};
use crate::flow::{Catalog, Recommend, RecommendationSource};

pub fn recommend(catalog: &Catalog, profile: &Profile, trigger: &Event, spec: &Recommend) -> Vec<String> {
    let items: &[LineItem] = trigger.order.as_ref().map(|o| &o.items[..]).or(trigger.checkout.as_ref().map(|c| c.items.as_slice())).unwrap_or_default();
    let mut excluded: BTreeSet<&str> = profile.sku_order_counts.keys().map(|sku| sku.as_str()).collect();
    excluded.extend(items.iter().map(|i| i.sku.as_str()));
    let categories: BTreeSet<&str> = items.iter().filter_map(|i| i.category.as_deref().or_else(|| catalog.get(&i.sku).map(|p| p.category.as_str()))).collect();
    let mut picked: Vec<String> = Vec::new();
    let offer = |sku: &str, picked: &mut Vec<String>| {
        if picked.len() < spec.count && !excluded.contains(sku) && catalog.get(sku).is_some() && !picked.iter().any(|p| p == sku) {
            picked.push(sku.to_owned());
        }
    };
    for source in &spec.from {
        // A catalog ranks hundreds of products; once enough are picked the rest cannot be.
        if picked.len() >= spec.count {
            break;
        }
        match source {
            RecommendationSource::Related => {
                for item in items {
                    let from_catalog = catalog.get(&item.sku).map(|p| p.related_skus.as_slice()).unwrap_or_default();
                    for sku in item.related_skus.iter().chain(from_catalog) {
                        offer(sku, &mut picked);
                    }
                }
            }
            RecommendationSource::CategoryBestsellers => {
                for product in catalog.bestsellers().filter(|p| categories.contains(p.category.as_str())) {
                    offer(&product.sku, &mut picked);
                    if picked.len() >= spec.count {
                        break;
                    }
                }
            }
            RecommendationSource::Bestsellers => {
                for product in catalog.bestsellers() {
                    offer(&product.sku, &mut picked);
                    if picked.len() >= spec.count {
                        break;
                    }
                }
            }
        }
    }
    picked
}
