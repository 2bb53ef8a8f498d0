"""REST API blueprints, one per resource; thin adapters over the domain modules."""
