"""Airflow's entry to the taxi tips DAG (pipeline/run_airflow.py): point
AIRFLOW__CORE__DAGS_FOLDER at this folder. Airflow only loads DAG files that
mention "airflow" and "dag", as this line does."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from pipeline import run_airflow  # noqa: E402

taxi_tips = run_airflow.create_dag()
