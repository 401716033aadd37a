"""Words the synthetic data uses (genres, poster titles); the tiny tokenizer's vocabulary includes them."""

GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Thriller", "Animation", "Documentary",
          "Fantasy", "Crime")

TITLE_WORDS = ("The", "Last", "Night", "City", "Lost", "Dark", "River", "Star", "Blue", "Secret", "Summer",
               "Winter", "Road", "House", "Dream", "Fire", "Storm", "Island", "Moon", "Silent", "Golden",
               "Wild", "Hidden", "Empire", "Echo", "Garden", "Shadow", "Light", "Heart", "Stone")
