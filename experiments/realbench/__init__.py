"""The real-data benchmark: every RCA method on real incidents (Nezha Train Ticket, PetShop),
development parts reported apart from the held-out ones."""
