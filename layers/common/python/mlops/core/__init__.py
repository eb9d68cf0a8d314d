"""Ground floor: settings, errors, AWS clients, observability, the family schema and the code version.
Imports no other mlops package."""
