"""medseg.planning"""
