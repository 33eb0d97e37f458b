"""Talking to the people of a scene: chat, dialog, survey, and stored chat sessions."""
