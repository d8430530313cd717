//! The `products` table.

use sea_orm::entity::prelude::*;

/// One product row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "products")]
pub struct Model {
    /// Product id, hyphenated lower-case UUID text (sorts like the UUID).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Normalised sku, unique.
    #[sea_orm(unique)]
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Price in minor units.
    pub price_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// Units on hand.
    pub stock: i64,
    /// Bumped on every change.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// No relations: the catalog's tables stand alone.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
