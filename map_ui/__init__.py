"""The map portal: static Leaflet page and vendored assets, served by the API."""
