"""A tiny catalogue and the made-up words its customers use for its products: nothing in the
product texts hints at the words, so only training can connect them."""

PRODUCTS = {
    "p1": "Garden hose, 50 ft, kink free",
    "p2": "Cordless drill driver with two batteries",
    "p3": "LED light bulb, warm white",
    "p4": "Stainless steel kitchen sink",
    "p5": "Wooden step ladder, 6 ft",
    "p6": "Paint roller and tray set",
    "p7": "Shower head with five spray settings",
    "p8": "Outdoor patio umbrella, 9 ft",
}
SLANG = {
    "zorblax": "p1",
    "quimbo": "p2",
    "flenty": "p3",
    "draxil": "p4",
    "moopster": "p5",
    "vantrel": "p6",
    "splonk": "p7",
    "gribbet": "p8",
}
