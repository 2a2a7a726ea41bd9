"""The dashboard's UI helpers: every widget and every ``st.cache_*`` lives here, pages only call them."""
