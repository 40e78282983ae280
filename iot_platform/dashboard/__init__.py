"""The live dashboard (`iot-platform dashboard`): a Plotly Dash app over the lake, read-only."""
